"""The run screen of a model placed on two (fake) GPUs: `d` makes the graph, the series
table, the breakdown and the out-of-memory forecast follow one device; a run on one
device has no such key."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import WITH_GPU, wait_for

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.analysis.live_forecast import forecast_oom, headroom
from vramtui.measure.device_view import on_device
from vramtui.runspec import DeviceList, RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import on_two_gpus, synthetic_run
from vramtui.tui.app import VramApp
from vramtui.tui.prediction import breakdown_rows, forecast_text
from vramtui.tui.screen_text import series_rows, short_bytes
from vramtui.tui.screens.run_screen import RunScreen

TWO_GPUS = DeviceList((*WITH_GPU.choices[:1], replace(WITH_GPU.choices[0], id="cuda:1"),
                       *WITH_GPU.choices[1:]))  # fmt: skip


def app_for(spec: RunSpec, items: list, out: Path, devices: DeviceList) -> VramApp:  # type: ignore[type-arg]
    return VramApp(spec, start=True, out_dir=out, list_devices=lambda: devices,
                   make_recorder=lambda s: ReplayRecorder(s, items, hold=True))  # fmt: skip


def _follows(screen: RunScreen, device: str) -> None:
    """What the screen shows is `device`'s, as a session of its own."""
    view = on_device(screen.run.session.snapshot(), device)
    assert device in screen.sub_title
    assert screen._shown["series"][0] == series_rows(view)
    breakdown = measured_breakdown(view, "latest")
    assert breakdown is not None
    shown = screen._shown["breakdown"][0]
    assert shown[1] == breakdown_rows(breakdown)
    forecast = forecast_oom(view)
    assert forecast is not None
    assert shown[3] == forecast_text(forecast, 2000, view.tokens_done)[0]
    room = headroom(view)  # its free memory and its allocator's cache: what it can grow into
    assert room is not None and screen._shown["side-facts"].startswith(f"room {short_bytes(room)}")


@pytest.mark.engine
def test_d_makes_the_screen_follow_each_device_in_turn(tmp_path: Path) -> None:
    spec = RunSpec(model="opt-1.3b", tokens=2000, device_map="auto", max_memory="0=40GiB,1=40GiB")
    items = on_two_gpus(synthetic_run("opt-1.3b", 2000, upto=600))
    app = app_for(spec, items, tmp_path, TWO_GPUS)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            await wait_for(pilot, lambda: screen.devices == ["cuda:0", "cuda:1"])
            assert screen.check_action("next_device", ()) is True
            await wait_for(pilot, lambda: "series" in screen._shown)
            assert screen.device == "cuda:0"
            _follows(screen, "cuda:0")
            await pilot.press("d")
            await wait_for(pilot, lambda: "cuda:1" in screen.sub_title)
            _follows(screen, "cuda:1")
            weights = screen._shown["breakdown"][0][1][0]
            assert weights == (
                "weights",
                screen.run.session.snapshot().placed.devices[1]["weights_bytes"],
            )
            assert "▸cuda:1" in str(screen.query_one("#devices").render())
            await pilot.press("d")
            await wait_for(pilot, lambda: "cuda:0" in screen.sub_title)
            _follows(screen, "cuda:0")

    asyncio.run(scenario())


def test_a_run_on_one_device_has_no_device_key(tmp_path: Path) -> None:
    spec = RunSpec(model="opt-1.3b", tokens=2000, device="cuda:0")
    app = app_for(spec, synthetic_run("opt-1.3b", 2000, upto=100), tmp_path, WITH_GPU)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            await wait_for(pilot, lambda: "series" in screen._shown)
            assert screen.check_action("next_device", ()) is False
            shown = dict(screen._shown)
            await pilot.press("d")
            await pilot.pause()
            assert screen.device is None and screen._shown["series"] == shown["series"]

    asyncio.run(scenario())


@pytest.mark.engine
def test_the_start_screen_predicts_each_device_of_a_placed_run(tmp_path: Path) -> None:
    from textual.widgets import Static

    from vramtui.predict.estimator import estimate_run
    from vramtui.predict.placed import estimate_placed, format_gib
    from vramtui.runspec import resolve

    spec = RunSpec(model="opt-13b", tokens=50, device_map="auto", max_memory="0=12GiB,cpu=64GiB")
    run = resolve(spec, WITH_GPU)
    est = estimate_run(run)
    assert est is not None and run.max_memory is not None
    expected = estimate_placed(est, dict(run.config or {}), "auto", run.max_memory)
    app = VramApp(spec, start=False, out_dir=tmp_path, list_devices=lambda: WITH_GPU)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            widget = app.screen.query_one("#prediction", Static)
            await wait_for(pilot, lambda: "device map" in str(widget.render()), timeout=120)
            text = str(widget.render())
            first = expected.runs_out_first
            assert first is not None and f"auto device map: {first.device} runs out first" in text
            assert expected.room is not None and format_gib(expected.room) in text
            for d in expected.devices:  # a line each, with its predicted peak
                line = next(x for x in text.splitlines() if x.startswith(d.device))
                assert f"{d.peak_total_bytes / 1e9:.1f} GB" in line
            assert widget.has_class("-warn")  # a device runs out: said as a warning
            assert all(len(x) <= 42 for x in text.splitlines())  # the column at 80x24

    asyncio.run(scenario())
