"""The app driven by keys: the form, a real tiny run on the CPU, export, cancel, quit.

Real runs (a fresh engine process each) are few and small; everything else is
fed by a replay of a synthetic event stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from helpers import CPU_ONLY, TINY_CONFIG, WITH_GPU, resolved, wait_for
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from vramtui.measure.recorder import Recorder
from vramtui.runspec import DeviceList, RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.app import VramApp
from vramtui.tui.messages import DevicesFound
from vramtui.tui.plotdata import Line
from vramtui.tui.run_state import RecorderFactory
from vramtui.tui.screens.confirm_run_screen import ConfirmRunScreen
from vramtui.tui.screens.export_screen import ExportScreen
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.start_screen import StartScreen
from vramtui.tui.screens.summary_screen import SummaryScreen
from vramtui.tui.widgets.memory_plot import MemoryPlot

SLOW = {"VRAMTUI_TEST_STEP_SLEEP": "0.05"}


def tiny(tokens: int = 30) -> RunSpec:
    return RunSpec(
        model="tiny-opt", source="config", path=str(TINY_CONFIG), tokens=tokens, device="cpu"
    )


def app_for(
    spec: RunSpec,
    out: Path,
    make_recorder: RecorderFactory | None = None,
    start: bool = False,
    devices: DeviceList = CPU_ONLY,
) -> VramApp:
    kwargs = {"make_recorder": make_recorder} if make_recorder else {}
    return VramApp(spec, start=start, out_dir=out, list_devices=lambda: devices, **kwargs)


async def type_into(pilot: Pilot, text: str) -> None:
    await pilot.press("ctrl+u", "end", "ctrl+u")  # clear the field whatever the cursor
    await pilot.press(*[{" ": "space"}.get(c, c) for c in text])


def text_of(screen: object, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())  # type: ignore[attr-defined]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# ---- a real tiny run, filled in by keys ------------------------------------------------------
@pytest.mark.engine
def test_fill_the_form_run_to_the_end_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short relative names to type
    (tmp_path / "tiny.json").write_text(TINY_CONFIG.read_text())
    out = tmp_path / "sessions"
    app = app_for(RunSpec(), out)  # opt-125m from the architecture: the defaults

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, StartScreen)
            await pilot.pause()
            # Source: config.json, by keys on the focused select.
            screen.query_one("#source", Select).focus()
            await pilot.press("enter", "down", "enter")
            assert screen.query_one("#source", Select).value == "config"
            await pilot.press("tab")
            assert app.focused is screen.query_one("#path", Input)
            await type_into(pilot, "tiny.json")
            await pilot.press("tab")
            await type_into(pilot, "30")
            await pilot.press("tab", "tab")  # prompt tokens, batch
            await type_into(pilot, "0")
            await pilot.press("enter")  # submit: batch 0 is refused in place
            error = screen.query_one("#batch-error", Static)
            assert error.has_class("-shown") and "Batch must be positive" in text_of(
                screen, "#batch-error"
            )
            assert isinstance(app.screen, StartScreen)
            await type_into(pilot, "1")
            screen.query_one("#device", Select).focus()
            await pilot.press("enter", "end", "enter")  # the last device: cpu
            assert screen.query_one("#device", Select).value == "cpu"
            await pilot.press("ctrl+r")
            assert not error.has_class("-shown")
            # The run screen is pushed; with a spare engine ready the tiny run may have
            # ended, and its summary gone on top, by now.
            assert any(isinstance(s, RunScreen) for s in app.screen_stack)
            run = app.current
            assert run is not None and run.spec.tokens == 30
            assert (run.spec.source, run.spec.path, run.spec.model) == (
                "config",
                "tiny.json",
                "tiny",
            )
            await wait_for(pilot, lambda: run.ended)
            await pilot.pause()
            summary = app.screen
            assert isinstance(summary, SummaryScreen)
            assert "Peak memory" in text_of(summary, "#heading")
            assert "30/30" in text_of(summary, "#heading")
            assert "process RSS" in text_of(summary, "#notes")
            # The run was saved by itself.
            saved = json.loads(run.saved.json.read_text())
            assert saved["status"] == "completed" and saved["tokens_generated"] == 30
            text = run.saved.csv.read_text()
            assert text.count(",engine,0,prefill,") == 1 and text.count(",decode,") == 29
            # e: export to a chosen name, twice: the second time asks before replacing.
            for attempt in range(2):
                await pilot.press("e")
                assert isinstance(app.screen, ExportScreen)
                await type_into(pilot, "mine")
                await pilot.press("enter")
                if attempt == 1:
                    assert isinstance(app.screen, ExportScreen)
                    assert "Enter again" in text_of(app.screen, "#export-error")
                    await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, SummaryScreen)
            assert json.loads((tmp_path / "mine.json").read_text())["tokens_generated"] == 30
            assert (tmp_path / "mine.csv").stat().st_size > 0
            # s: a screenshot into the out folder; g: back to the graph; q: quit.
            await pilot.press("s")
            await pilot.press("g")
            assert isinstance(app.screen, RunScreen)
            assert "token 30/30" in text_of(app.screen, "#status")
            await pilot.press("q")
        assert len(list(out.glob("*.svg"))) == 1

    asyncio.run(scenario())
    assert app.return_code == 0


@pytest.mark.engine
def test_cancel_then_run_again_then_quit_ends_the_engine(tmp_path: Path) -> None:
    out = tmp_path / "sessions"
    app = app_for(tiny(100), out, lambda spec: Recorder.for_run(spec, extra_env=SLOW), start=True)

    async def scenario() -> list[int]:
        pids = []
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(
                pilot, lambda: app.current and app.current.session.snapshot().tokens_done >= 3
            )
            first = app.current
            pids.append(first.session.snapshot().environment.engine_pid)
            await pilot.press("c")
            await wait_for(pilot, lambda: first.ended)
            await pilot.pause()
            assert first.session.snapshot().status == "cancelled"
            assert isinstance(app.screen, SummaryScreen)
            assert "cancelled" in text_of(app.screen, "#heading")
            assert not pid_alive(pids[0])
            # r: the form again, with the same settings; ctrl+r runs it.
            await pilot.press("r")
            assert isinstance(app.screen, StartScreen)
            assert app.screen.query_one("#tokens", Input).value == "100"
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.current is not first)
            second = app.current
            await wait_for(pilot, lambda: second.session.snapshot().tokens_done >= 2)
            pids.append(second.session.snapshot().environment.engine_pid)
            await pilot.press("q")  # while generating: the engine ends first
            await wait_for(pilot, lambda: second.ended)
        return pids

    pids = asyncio.run(scenario())
    assert not any(pid_alive(pid) for pid in pids)
    saved = sorted(out.glob("*.json"))
    assert len(saved) == 2
    assert [json.loads(p.read_text())["status"] for p in saved] == ["cancelled", "cancelled"]


# ---- replayed runs: no engine ------------------------------------------------------------------
def replayed(tokens: int = 100, **kwargs: object) -> RecorderFactory:
    items = synthetic_run("opt-125m", tokens, **kwargs)  # type: ignore[arg-type]
    return lambda spec: ReplayRecorder(spec, items, hold=True)


def test_bad_values_are_shown_next_to_their_field(tmp_path: Path) -> None:
    # --start with a bad value: the form, with the error in place, and no run.
    app = app_for(RunSpec(model="opt-125m", tokens=2100), tmp_path, replayed(), start=True)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await pilot.pause()
            assert isinstance(app.screen, StartScreen) and app.current is None
            assert "2048 positions" in text_of(screen, "#tokens-error")
            assert app.focused is screen.query_one("#tokens", Input)
            await type_into(pilot, "1.5")  # refused as it is, never read as 15
            assert screen.query_one("#tokens", Input).value == "1.5"
            await pilot.press("enter")
            assert "Tokens must be a whole number, got '1.5'" in text_of(screen, "#tokens-error")
            screen.query_one("#source", Select).value = "checkpoint"
            await pilot.pause()
            await type_into(pilot, "20")
            screen.query_one("#path", Input).value = str(tmp_path / "nowhere")
            await pilot.press("ctrl+r")
            assert "not found" in text_of(screen, "#path-error")
            assert not screen.query_one("#tokens-error", Static).has_class("-shown")

    asyncio.run(scenario())


def test_a_cpu_run_predicted_not_to_fit_the_ram_asks_before_it_starts(tmp_path: Path) -> None:
    # opt-13b in float32 on the CPU: 51.79 GB predicted, and the test CPU has 20 GB available
    spec = RunSpec(model="opt-13b", tokens=5, device="cpu")
    app = app_for(spec, tmp_path, replayed(), start=True)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:

            def asked() -> bool:  # the dialog, its buttons mounted
                return isinstance(app.screen, ConfirmRunScreen) and bool(app.screen.query("#no"))

            await wait_for(pilot, asked)
            question = text_of(app.screen, "#question")
            assert question == (
                "opt-13b: predicted peak RSS 51.79 GB, RAM available 20.00 GB — run anyway?"
            )
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen))
            assert app.current is None and "won't fit" in text_of(app.screen, "#prediction")
            await pilot.press("ctrl+r")
            await wait_for(pilot, asked)
            await pilot.press("y")
            await wait_for(pilot, lambda: app.current is not None)
            assert app.current is not None and app.current.spec.model == "opt-13b"

    asyncio.run(scenario())


def test_a_cpu_run_draws_its_predicted_rss(tmp_path: Path) -> None:
    items = synthetic_run("opt-125m", 100, upto=10, backend="cpu")
    spec = RunSpec(model="opt-125m", tokens=100, device="cpu")
    app = app_for(spec, tmp_path, lambda spec: ReplayRecorder(spec, items, hold=True), start=True)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:

            def predicted() -> Line | None:
                plots = app.screen.query(MemoryPlot)  # the run screen's, once mounted
                data = plots.first().data if plots else None
                return data.predicted if data is not None else None

            await wait_for(pilot, predicted)
            line = predicted()
            assert isinstance(app.screen, RunScreen) and line is not None
            assert line.xs[-1] == 99  # the whole budget, from the start
            await pilot.press("c")  # cancel the held replay
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))

    asyncio.run(scenario())


def test_engine_usage_error_returns_to_the_form(tmp_path: Path) -> None:
    items = [synthetic_run("opt-125m", 10)[0]]
    from vramtui.measure import events as ev

    refused = ev.Failed("usage", "no device 'cuda:7' here; devices here: cpu", "start")
    items.append(replace(refused, field="device"))
    # NVML did not answer, so the form could not count the GPUs: the engine refuses it.
    unknown = DeviceList(CPU_ONLY.choices, gpus_counted=False)
    out = tmp_path / "out"
    app = app_for(
        RunSpec(device="cuda:7"), out, lambda spec: ReplayRecorder(spec, items), devices=unknown
    )

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.current and app.current.ended)
            # back on the form, the engine's refusal under its field (however busy the box)
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, StartScreen)
                    and "cuda:7" in text_of(app.screen, "#device-error")
                ),
            )
            # a late redraw of the form's own errors (the device list answering) keeps it
            start = app.screen
            assert isinstance(start, StartScreen)
            start.post_message(DevicesFound(unknown))
            start.refresh_form()
            await pilot.pause()
            assert "cuda:7" in text_of(start, "#device-error")
            # changing the form takes the refusal away
            start.query_one("#tokens", Input).value = "11"
            await wait_for(pilot, lambda: "cuda:7" not in text_of(start, "#device-error"))

    asyncio.run(scenario())
    assert not out.exists() or not list(out.iterdir())  # nothing measured: nothing written


@pytest.mark.slow
def test_run_again_the_instant_a_run_ends_does_not_crash(tmp_path: Path) -> None:
    # r pops the summary while it may still be mounting: its header's title update,
    # still queued, must not find its title gone and take the app down (NoMatches).
    items = synthetic_run("opt-125m", 5)
    spec = RunSpec(model="opt-125m", tokens=5, device="cuda:0")
    app = app_for(spec, tmp_path, lambda s: ReplayRecorder(s, items))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(10):
                app.begin(resolved(spec, WITH_GPU))
                deadline = time.monotonic() + 120  # ends a test that would hang
                while not isinstance(app.screen, SummaryScreen):
                    assert app.is_running and time.monotonic() < deadline
                    await asyncio.sleep(0)  # as soon as it is there, not when it is idle
                app.action_run_again()
            await wait_for(
                pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.is_mounted
            )
            assert app.is_running

    asyncio.run(scenario())
    assert app.return_code is None  # not ended by an error
    assert app.runs_started == 10


def test_keys_shown_follow_the_run_state_and_x_toggles_the_axis(tmp_path: Path) -> None:
    app = app_for(RunSpec(tokens=100), tmp_path, replayed(100, upto=40), start=True)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert screen.check_action("cancel", ()) is True
            assert screen.check_action("export", ()) is None  # shown, dimmed
            await pilot.press("e", "r")  # not while running
            assert app.screen is screen
            await pilot.press("x")
            assert screen.axis == "seconds"
            await wait_for(pilot, lambda: screen.query_one("#plot").data.axis == "seconds")
            await pilot.press("x")
            assert screen.axis == "tokens"
            await pilot.press("c")
            await wait_for(pilot, lambda: app.current.ended)
            await pilot.pause()
            assert isinstance(app.screen, SummaryScreen)
            await pilot.press("g")
            assert app.screen is screen
            assert screen.check_action("cancel", ()) is None
            assert screen.check_action("export", ()) is True
            await pilot.press("p")
            assert isinstance(app.screen, SummaryScreen)
            await pilot.press("escape")
            assert app.screen is screen

    asyncio.run(scenario())


def test_export_refuses_a_missing_folder_and_escape_cancels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = app_for(RunSpec(tokens=50), tmp_path / "out", replayed(50), start=True)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            await pilot.press("e")
            await type_into(pilot, "no/such/x.json")
            await pilot.press("enter")
            assert isinstance(app.screen, ExportScreen)
            assert "does not exist" in text_of(app.screen, "#export-error")
            await pilot.press("escape")
            assert isinstance(app.screen, SummaryScreen)

    asyncio.run(scenario())
    assert not list(tmp_path.glob("*.json"))


# ---- the app process never imports torch -----------------------------------------------------
@pytest.mark.engine
def test_the_app_process_never_imports_torch(tmp_path: Path) -> None:
    """Run the tiny model to the end in a fresh interpreter (other tests import torch)."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from vramtui.runspec import DeviceList, RunSpec
        from vramtui.tui.app import VramApp
        spec = RunSpec(model="tiny-opt", source="config", path={str(TINY_CONFIG)!r},
                       tokens=20, device="cpu")
        app = VramApp(spec, start=True, out_dir=__import__("pathlib").Path({str(tmp_path)!r}))
        result = {{}}

        async def main():
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                while not (app.current and app.current.ended):
                    await pilot.pause(0.05)
                result["status"] = app.current.session.snapshot().status
                await pilot.press("q")

        asyncio.run(main())
        result["torch"] = sorted(m for m in sys.modules if m.split(".")[0] in
                                 ("torch", "transformers"))
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert result["torch"] == []


@pytest.mark.parametrize("argv", [["--model", "opt-1.3b", "--tokens", "2000"]])
def test_cli_launches_the_app_with_the_flags(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def fake_run(self: VramApp, *args: object, **kwargs: object) -> None:
        seen.update(spec=self.spec, start=self.autostart, out=self.out_dir)

    monkeypatch.setattr(VramApp, "run", fake_run)
    from vramtui.cli import main

    assert main([*argv, "--start", "--out", str(tmp_path / "o")]) == 0
    spec = seen["spec"]
    assert (spec.model, spec.tokens) == ("opt-1.3b", 2000)  # type: ignore[attr-defined]
    assert seen["start"] is True and seen["out"] == tmp_path / "o"


def test_wall_clock_names_are_injected(tmp_path: Path) -> None:
    app = VramApp(
        RunSpec(tokens=20),
        start=True,
        out_dir=tmp_path,
        list_devices=lambda: CPU_ONLY,
        make_recorder=replayed(20),
        wall_clock=lambda: datetime(2030, 5, 6, 7, 8, 9),
    )

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))

    asyncio.run(scenario())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20300506-070809-opt-125m-cuda0.csv",
        "20300506-070809-opt-125m-cuda0.json",
    ]


def test_keys_that_do_nothing_now_say_why_and_the_palette_offers_every_action(
    tmp_path: Path,
) -> None:
    app = app_for(RunSpec(tokens=100), tmp_path, replayed(100, upto=40), start=True)
    said: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.notify = lambda message, **kw: said.append(str(message))  # type: ignore[method-assign]
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            await pilot.press("e", "p", "r")  # none of them while the run goes on
            assert isinstance(app.screen, RunScreen)
            assert said[:3] == [
                "export: once the run ends (c cancels it)",
                "the summary: once the run ends (c cancels it)",
                "run again: once the run ends (c cancels it)",
            ]
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for wanted in ("Run", "Cancel", "Export", "Graph", "Summary", "Screenshot"):
                assert wanted in titles
            assert "Run again" in titles and "Keys" in titles
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert isinstance(app.screen, RunScreen)

    asyncio.run(scenario())


@pytest.mark.engine
def test_typing_on_the_model_list_filters_it_by_name_hub_id_or_family(tmp_path: Path) -> None:
    from textual.widgets import DataTable

    app = app_for(RunSpec(model="opt-1.3b"), tmp_path, replayed())

    async def scenario() -> tuple[list[str], str, list[str], str]:
        async with app.run_test(size=(100, 30)) as pilot:
            start = app.screen
            assert isinstance(start, StartScreen)
            table = start.query_one("#model-table", DataTable)
            table.focus()
            await type_into(pilot, "qwen3")  # typed on the list: it goes to the filter
            await pilot.pause()
            shown = list(start._shown)
            box = start.query_one("#model-filter", Input)
            start_model = start._model()
            box.value = "meta-llama/"
            await pilot.pause()
            return shown, start_model, list(start._shown), box.value

    qwen3, chosen, llama, typed = asyncio.run(scenario())
    assert qwen3 and all(name.startswith("qwen3") for name in qwen3)
    assert "qwen3-30b-a3b" in qwen3 and chosen == qwen3[0]
    assert typed == "meta-llama/" and llama and all(name.startswith("llama") for name in llama)
