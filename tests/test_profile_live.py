"""`vramtui profile --live`: the app's run screen on a real program (CPU, tiny models)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CPU_ONLY as CPU
from helpers import TINY_CONFIG, back_from_summary, wait_for
from textual.widgets import RichLog, Static

from vramtui.measure.recorder import Recorder
from vramtui.measure.script.program_process import Program
from vramtui.tui.plotdata import build_plot_data
from vramtui.tui.profile_app import ProfileApp, ProgramRunScreen

PROGRAM = Path(__file__).parent / "fixtures" / "program.py"


@pytest.mark.engine
def test_the_run_screen_follows_the_program_and_shows_its_output(tmp_path: Path) -> None:
    program = Program((str(PROGRAM), str(TINY_CONFIG), str(tmp_path / "checkpoint")))
    made: list[Recorder] = []

    def make(on_output: Callable[[str], None]) -> Recorder:
        made.append(Recorder.for_program(program, capture=True, on_output=on_output))
        return made[0]

    out = tmp_path / "sessions"
    app = ProfileApp(make, out_dir=out)

    async def scenario() -> tuple[list[str], str]:
        async with app.run_test(size=(120, 40)) as pilot:
            assert isinstance(app.screen, ProgramRunScreen)
            screen = app.screen
            await back_from_summary(pilot, screen)
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


@pytest.mark.engine
def test_the_start_screen_profiles_your_script(tmp_path: Path) -> None:
    """Source "your script": the command line is checked in place, then Run profiles it
    on the run screen with its output in the log panel."""
    from textual.widgets import Input, Select

    from vramtui.runspec import RunSpec
    from vramtui.tui.app import VramApp
    from vramtui.tui.screens.start_screen import StartScreen

    app = VramApp(RunSpec(device="cpu"), out_dir=tmp_path / "sessions", list_devices=lambda: CPU)

    async def scenario() -> tuple[str, bool, list[str]]:
        async with app.run_test(size=(100, 30)) as pilot:
            start = app.screen
            assert isinstance(start, StartScreen)
            start.query_one("#source", Select).value = "script"
            await pilot.pause()
            assert start.query_one("#tokens", Input).disabled  # the program chooses
            start.query_one("#path", Input).value = str(tmp_path / "missing.py")
            await pilot.press("ctrl+r")
            error = str(start.query_one("#path-error", Static).render())
            assert app.current is None  # nothing ran
            command = f"{PROGRAM} {TINY_CONFIG} {tmp_path / 'checkpoint'}"
            start.query_one("#path", Input).value = command
            await pilot.pause()
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, ProgramRunScreen))
            screen = app.screen
            run = await back_from_summary(pilot, screen)
            lines = [strip.text for strip in screen.query_one("#program-log", RichLog).lines]
            return error, run.recorder.exit_code == 0, lines

    error, exit_ok, lines = asyncio.run(scenario())
    assert "no such script" in error and "missing.py" in error
    assert exit_ok and "done" in lines
    saved = list((tmp_path / "sessions").glob("*.json"))
    assert len(saved) == 1 and len(json.loads(saved[0].read_text())["generations"]) == 5
