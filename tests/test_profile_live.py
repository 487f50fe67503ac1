"""`vramtui profile --live`: the app's run screen on a real program (CPU, tiny models)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import TINY_CONFIG
from test_tui_pilot import wait_for
from textual.widgets import RichLog, Static

from vramtui.measure.script.process import Program
from vramtui.measure.script.recorder import ScriptRecorder
from vramtui.tui.plotdata import build_plot_data
from vramtui.tui.profile_app import ProfileApp, ProgramRunScreen
from vramtui.tui.screens.summary import SummaryScreen

PROGRAM = Path(__file__).parent / "fixtures" / "program.py"


def test_the_run_screen_follows_the_program_and_shows_its_output(tmp_path: Path) -> None:
    program = Program((str(PROGRAM), str(TINY_CONFIG), str(tmp_path / "checkpoint")))
    made: list[ScriptRecorder] = []

    def make(on_output: object) -> ScriptRecorder:
        made.append(ScriptRecorder(program, capture=True, on_output=on_output))  # type: ignore[arg-type]
        return made[0]

    out = tmp_path / "sessions"
    app = ProfileApp(make, out_dir=out)

    async def scenario() -> tuple[list[str], str]:
        async with app.run_test(size=(120, 40)) as pilot:
            assert isinstance(app.screen, ProgramRunScreen)
            screen = app.screen
            run = app.current
            assert run is not None
            await wait_for(pilot, lambda: run.ended)
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            app.pop_screen()  # back to the graph, as g does
            await pilot.pause()
            screen.redraw()
            await pilot.pause()
            log = screen.query_one("#program-log", RichLog)
            lines = [strip.text for strip in log.lines]
            status = str(screen.query_one("#status", Static).render())
            return lines, status

    lines, status = asyncio.run(scenario())
    assert "done" in lines and "to stderr" in lines  # stdout and stderr, into the panel
    assert status.startswith("completed │ generate() #4 │ token ")
    view = made[0].session.snapshot()
    marks = build_plot_data(view, axis="tokens").phase_marks
    assert [label for _, label in marks] == ["#0", "#1", "#2", "#3", "#4"]
    assert [x for x, _ in marks] == [float(g.first_token) for g in view.generations]
    saved = list(out.glob("*.json"))
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())["generations"]) == 5
    assert made[0].exit_code == 0
