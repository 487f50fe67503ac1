"""The compare screen: snapshots of sessions overlaid, its keys, and the summary's
"compare with…" that reaches it from a finished run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import make_app, opt13, settle

from vramtui.analysis.run_comparison import labelled
from vramtui.report.comparison_text import change
from vramtui.report.export import write_json
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.compare_app import CompareApp
from vramtui.tui.compare_plot import build_compare_data
from vramtui.tui.screens.compare_screen import CompareScreen
from vramtui.tui.screens.pick_session_screen import PickSessionScreen
from vramtui.tui.screens.summary_screen import SummaryScreen
from vramtui.units import format_bytes

WIDE, SMALL = (100, 30), (80, 24)


def synthetic_view(model: str, tokens: int, **options: object):
    spec = RunSpec(model=model, tokens=tokens, device="cuda:0")
    return ReplayRecorder(spec, synthetic_run(model, tokens, **options)).session.snapshot()  # type: ignore[arg-type]


def two_models():
    return labelled([synthetic_view("opt-1.3b", 600), synthetic_view("opt-2.7b", 400)])


def test_each_session_is_a_line_of_its_own_colour() -> None:
    items = two_models()
    data = build_compare_data(items, "step_peak", [True, True], buckets=50)
    assert len(data.lines) == 2 and data.lines[0].color != data.lines[1].color
    assert data.x_max == 600
    peaks = [max(v for _, v in c.view.token_series("step_peak")) for c in items]
    assert max(max(line.ys) for line in data.lines) * data.scale == pytest.approx(max(peaks))
    hidden = build_compare_data(items, "step_peak", [True, False], buckets=50)
    assert len(hidden.lines) == 1


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x30", "80x24"])
def test_compare_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(CompareApp(two_models()), terminal_size=size)


def test_compare_screen_next_series_and_hidden_session(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(CompareApp(two_models()), terminal_size=WIDE, press=["v", "v", "1"])


def test_keys_step_the_series_and_hide_sessions() -> None:
    async def scenario() -> None:
        app = CompareApp(two_models())
        async with app.run_test(size=WIDE) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, CompareScreen) and screen.series == "step_peak"
            await pilot.press("v")
            assert screen.series == "allocated"
            await pilot.press("2")
            assert screen.shown == [True, False]
            await pilot.press("5")  # no fifth session: a notice, nothing changes
            assert screen.shown == [True, False]
            await pilot.press("escape")
            await pilot.pause()
        assert app.return_code == 0

    asyncio.run(scenario())


def test_summary_compares_with_a_saved_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        saved = tmp_path / "sessions"
        saved.mkdir()
        other = synthetic_view("opt-2.7b", 300)
        write_json(other, saved / "20260101-000000-opt-2.7b-cuda0.json")
        app = make_app(opt13(200), synthetic_run("opt-1.3b", 200))
        app.out_dir = saved
        async with app.run_test(size=WIDE) as pilot:
            await settle(pilot, finished=True)
            assert isinstance(app.screen, SummaryScreen)
            await pilot.press("c")
            await pilot.pause()
            picker = app.screen
            assert isinstance(picker, PickSessionScreen)
            assert [p.name for p in picker.paths] == ["20260101-000000-opt-2.7b-cuda0.json"]
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, CompareScreen)
            assert [c.label for c in screen.items] == [
                "model=opt-1.3b tokens=200",
                "model=opt-2.7b tokens=300",
            ]
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, SummaryScreen)

    asyncio.run(scenario())


def test_a_session_without_samples_shows_its_saved_peak(tmp_path: Path) -> None:
    """A JSON without its CSV has no line to draw; the legend gives the peak it saved
    and the change from the base, and says there is no line."""
    from vramtui.report.saved import load_view
    from vramtui.tui.screens.compare_screen import legend

    base, other = synthetic_view("opt-1.3b", 300), synthetic_view("opt-2.7b", 200)
    alone = load_view(write_json(other, tmp_path / "other.json"))
    items = labelled([base, alone])
    text = legend(items, "step_peak", [True, True], color=False).plain
    saved = other.peaks["step_peak"].value
    base_peak = max(v for _, v in base.token_series("step_peak"))
    assert f"peak {format_bytes(saved, 2)}  {change(base_peak, saved)}" in text
    assert text.count("(its saved peak: no line)") == 1 and "no figures" not in text
