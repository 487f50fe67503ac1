"""`vramtui bench --devices`: cells dealt to one lane per device, the lanes at once."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from helpers import CPU_ONLY, H100

from vramtui.cli import main
from vramtui.errors import UsageError
from vramtui.runspec import DeviceList, ResolvedRun
from vramtui.sweep import grid
from vramtui.sweep.lanes import Lanes, deal, parse_devices
from vramtui.sweep.sweep_runner import Sweep
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run

TWO_GPUS = DeviceList((H100, replace(H100, id="cuda:1"), *CPU_ONLY.choices))


def _cells(n_tokens: int = 4) -> list[grid.Cell]:
    axes = grid.Axes.of_catalogue(["opt-125m", "opt-350m"], tokens=[10, 20][: n_tokens // 2])
    return axes.cells(TWO_GPUS)


def test_cells_are_dealt_in_turn_each_on_its_lanes_device() -> None:
    cells = _cells()
    lanes = deal(cells, ["cuda:0", "cuda:1"], TWO_GPUS)
    assert [len(lane) for lane in lanes] == [2, 2]
    assert [c.index for c in lanes[0]] == [1, 3] and [c.index for c in lanes[1]] == [2, 4]
    for device, lane in zip(["cuda:0", "cuda:1"], lanes, strict=True):
        assert {c.run.device for c in lane} == {device} == {c.spec.device for c in lane}


def test_devices_that_are_not_there_or_a_placed_cell_are_refused() -> None:
    with pytest.raises(UsageError, match="no device 'cuda:2'"):
        parse_devices("cuda:0,cuda:2", TWO_GPUS)
    with pytest.raises(UsageError, match="--devices is empty"):
        parse_devices(" , ", TWO_GPUS)
    placed = [replace(c, run=replace(c.run, spec=replace(c.spec, device_map="auto")))
              for c in _cells()]  # fmt: skip
    with pytest.raises(UsageError, match="does not take --device-map"):
        deal(placed, ["cuda:0", "cuda:1"], TWO_GPUS)


def test_the_lanes_run_at_the_same_time_and_report_in_cell_order() -> None:
    """Each cell waits until a cell of the other lane is running too: run one lane after
    the other and the barrier breaks (the cell fails)."""
    both = threading.Barrier(2, timeout=120)
    running: list[tuple[str, int]] = []

    class Together(ReplayRecorder):
        def __init__(self, run: ResolvedRun, extra_env: dict[str, str] | None) -> None:
            super().__init__(run, synthetic_run(run.spec.model, run.spec.tokens))
            self.device = run.device

        def run(self, on_event=None):  # noqa: ANN001, ANN201
            running.append((self.device, threading.get_ident()))
            both.wait()
            return super().run(on_event)

    lanes = Lanes(deal(_cells(), ["cuda:0", "cuda:1"], TWO_GPUS),
                  lambda cells: Sweep(cells, make_recorder=Together))  # fmt: skip
    results = lanes.run()
    assert [r.status for r in results] == ["completed"] * 4
    assert [r.cell.index for r in results] == [1, 2, 3, 4]
    assert {device for device, _ in running} == {"cuda:0", "cuda:1"}
    threads = {device: {t for d, t in running if d == device} for device in ("cuda:0", "cuda:1")}
    assert threads["cuda:0"].isdisjoint(threads["cuda:1"])


def test_bench_devices_refuses_a_device_that_is_not_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "--models", "opt-125m", "--tokens", "3", "--devices", "cpu,cuda:9",
                 "-q"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "no device 'cuda:9'" in err and "Traceback" not in err


@pytest.mark.engine
def test_bench_devices_runs_real_cells_each_in_its_own_process(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # noqa: ANN001
    import csv

    from helpers import TINY_CONFIG

    out = tmp_path / "bench.csv"
    code = main(["bench", "--config", str(TINY_CONFIG), "--tokens", "2,3", "--devices",
                 "cpu,cpu", "--csv", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert [r["tokens"] for r in rows] == ["2", "3"]
    assert len({r["engine_pid"] for r in rows}) == 2
