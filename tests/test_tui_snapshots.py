"""Snapshots of the start, run and summary screens, fed by synthetic event streams.

Everything that could change between runs is fixed: the data (synthetic_run),
the app's clocks, the device list, the save folder (relative, in a temporary
working directory) and the terminal size. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import SNAPSHOT_DEVICES, SNAPSHOT_H100, before, make_app, opt13

from vramtui.runspec import DeviceList, RunSpec
from vramtui.testing.synthetic import on_two_gpus, synthetic_run
from vramtui.tui.app import VramApp

H100, DEVICES = SNAPSHOT_H100, SNAPSHOT_DEVICES
TWO_GPUS = DeviceList((H100, replace(H100, id="cuda:1"), *DEVICES.choices[1:]))
WIDE, SMALL = (100, 30), (80, 24)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the app saves into ./sessions, shown as such


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x30", "80x24"])
def test_start_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    app = make_app(opt13(), None, start=False)
    assert snap_compare(app, terminal_size=size, run_before=before())


def test_start_screen_warns_when_the_run_will_not_fit(snap_compare: Callable[..., bool]) -> None:
    app = make_app(RunSpec(model="opt-66b", tokens=2000, device="cuda:0"), None, start=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=before())


def test_start_screen_shows_a_bad_value_in_place(snap_compare: Callable[..., bool]) -> None:
    app = make_app(RunSpec(model="opt-1.3b", tokens=2100, device="cuda:0"), None, start=False)
    assert snap_compare(app, terminal_size=WIDE, run_before=before("ctrl+r"))


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x30", "80x24"])
def test_run_screen_mid_generation(
    snap_compare: Callable[..., bool], size: tuple[int, int]
) -> None:
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000, upto=740))
    assert snap_compare(app, terminal_size=size, run_before=before())


def test_run_screen_seconds_axis(snap_compare: Callable[..., bool]) -> None:
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000, upto=740))
    assert snap_compare(app, terminal_size=WIDE, run_before=before("x"))


def test_run_screen_on_the_cpu_says_so(
    snap_compare: Callable[..., bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.predict.cpu_process import CPU_TORCH
    from vramtui.tui import prediction

    # the predicted RSS curve adds the Python process, whose size depends on the torch build
    monkeypatch.setattr(prediction, "cpu_process", lambda: CPU_TORCH)
    spec = RunSpec(model="opt-125m", tokens=200, device="cpu")
    app = make_app(spec, synthetic_run("opt-125m", 200, upto=120, backend="cpu"))
    assert snap_compare(app, terminal_size=SMALL, run_before=before())


def test_run_screen_without_colour(
    snap_compare: Callable[..., bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000, upto=740))
    assert app.no_color
    assert snap_compare(app, terminal_size=SMALL, run_before=before())


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x30", "80x24"])
def test_summary_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000))
    assert snap_compare(app, terminal_size=size, run_before=before(finished=True))


def test_summary_of_an_out_of_memory_run(snap_compare: Callable[..., bool]) -> None:
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000, upto=512, outcome="oom"))
    assert snap_compare(app, terminal_size=WIDE, run_before=before(finished=True))


def test_graph_after_the_end(snap_compare: Callable[..., bool]) -> None:
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000))
    assert snap_compare(app, terminal_size=WIDE, run_before=before("g", finished=True))


def placed_app(upto: int | None) -> VramApp:
    spec = RunSpec(model="opt-1.3b", tokens=2000, device_map="auto", max_memory="0=40GiB,1=40GiB")
    items = on_two_gpus(synthetic_run("opt-1.3b", 2000, upto=upto))
    return make_app(spec, items, devices=TWO_GPUS)


@pytest.mark.engine
def test_run_screen_of_a_model_on_two_gpus(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(placed_app(740), terminal_size=SMALL, run_before=before())


@pytest.mark.engine
def test_run_screen_following_the_second_gpu(snap_compare: Callable[..., bool]) -> None:
    # d: the graph, the series, the breakdown and the forecast are cuda:1's
    assert snap_compare(placed_app(740), terminal_size=SMALL, run_before=before("d"))


@pytest.mark.engine
def test_start_screen_of_a_placed_run(snap_compare: Callable[..., bool]) -> None:
    # opt-13b with 12 GiB on the GPU: each device predicted, cuda:0 runs out first
    spec = RunSpec(model="opt-13b", tokens=50, device_map="auto", max_memory="0=12GiB,cpu=64GiB")
    app = make_app(spec, None, start=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=before())


@pytest.mark.engine
def test_summary_of_a_model_on_two_gpus(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(placed_app(None), terminal_size=WIDE, run_before=before(finished=True))


def test_export_dialog(snap_compare: Callable[..., bool]) -> None:
    app = make_app(opt13(200), synthetic_run("opt-1.3b", 200))
    assert snap_compare(app, terminal_size=SMALL, run_before=before("e", finished=True))


def test_run_screen_before_the_first_sample(snap_compare: Callable[..., bool]) -> None:
    # Only the engine's hello and the load phase: no empty axis, no forecast yet.
    app = make_app(opt13(), synthetic_run("opt-1.3b", 2000, upto=0)[:3])
    assert snap_compare(app, terminal_size=SMALL, run_before=before())


def test_help_screen_lists_the_keys(snap_compare: Callable[..., bool]) -> None:
    app = make_app(opt13(), None, start=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=before("question_mark"))
