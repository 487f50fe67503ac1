"""The calibrated estimator against every committed H200 measurement.

Reads benchmarks/results/calibrate/*.json (one fresh engine process per cell, see
benchmarks/calibrate.py) and the bench CSV, so a change to the estimator that moves
a prediction away from what the GPU measured fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import benchmark_script

from vramtui.models.opt import opt_model
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.load import load_figures

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = sorted((ROOT / "benchmarks" / "results" / "calibrate").glob("*.json"))


ACCURACY = benchmark_script("estimator_accuracy")
CELLS = ACCURACY.collect(CALIBRATION, ACCURACY.BENCH)


def cell_id(c) -> str:  # type: ignore[no-untyped-def]
    return f"{c.source}:{c.model}-{c.prompt_tokens}+{c.tokens}-{c.attn}-b{c.batch}"


def test_the_committed_measurements_are_there() -> None:
    assert len(CALIBRATION) >= 4
    models = {c.model for c in CELLS}
    assert {"opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b"} <= models
    assert {c.batch for c in CELLS} == {1, 8} and {c.attn for c in CELLS} == {"sdpa", "eager"}


@pytest.mark.parametrize(
    "cell",
    CELLS,
    ids=cell_id,
)
def test_peak_allocated_within_5_percent_of_the_h200(cell) -> None:  # type: ignore[no-untyped-def]
    # The same prediction benchmarks/estimator_accuracy.py tabulates, in percent.
    (row,) = ACCURACY.rows_for([cell])
    assert abs(row["error_allocated"]) <= ACCURACY.GOAL_PERCENT, f"{row['error_allocated']:+.2f} %"


def _calibration_cells() -> list[dict]:
    return [c for path in CALIBRATION for c in json.loads(path.read_text())["cells"]]


@pytest.mark.parametrize("name", ["opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b"])
def test_the_load_simulation_matches_the_allocator_to_the_byte(name: str) -> None:
    """after_load: allocated, reserved and the load's step peak (the loader's warm-up)."""
    measured = [c["after_load"] for c in _calibration_cells() if c["spec"]["model"] == name]
    assert measured
    load = load_figures(opt_model(name), 2, DEFAULT)
    for m in measured:
        assert (load.allocated, load.reserved, load.peak) == (
            m["allocated"],
            m["reserved"],
            m["step_peak"],
        )


def test_context_and_libraries_match_nvml_minus_reserved() -> None:
    """NVML process - reserved at the peak, cells with cuDNN attention off: 678 MiB."""
    for path in CALIBRATION:
        data = json.loads(path.read_text())
        if data.get("side_by_side"):  # two processes shared the GPU: see the file's note
            continue
        for c in data["cells"]:
            if "cudnn-sdpa-on" in path.name and c["spec"]["attn"] == "sdpa":
                continue
            gap = c["peak_nvml_process_bytes"] - c["peak_reserved_bytes"]
            assert gap == DEFAULT.cuda_context_bytes + DEFAULT.cuda_libraries_bytes, path.name


@pytest.mark.parametrize(
    "cell",
    [c for c in CELLS if c.peak_reserved],
    ids=cell_id,
)
def test_the_cache_balloon_warning_matches_the_h200(cell) -> None:  # type: ignore[no-untyped-def]
    # Where the estimate warns, the H200 reserved more than twice what it allocated;
    # where it does not, reserved stayed within 1.3 x allocated.
    (row,) = ACCURACY.rows_for([cell])
    ratio = cell.peak_reserved / cell.peak_allocated
    assert (ratio > 2.0) if row["balloons"] else (ratio < 1.3), f"reserved/allocated {ratio:.2f}"


UNCAPPED = [c for c in CELLS if c.peak_reserved and not c.cudnn_sdpa]


@pytest.mark.parametrize(
    "cell",
    UNCAPPED,
    ids=cell_id,
)
def test_peak_reserved_and_nvml_within_7_percent_of_the_h200(cell) -> None:  # type: ignore[no-untyped-def]
    # Ballooning caches included (kv_replay.py), except where the GPU's size cut
    # the measurement short (rows_for's "capped").
    (row,) = ACCURACY.rows_for([cell])
    if row["capped"]:
        assert row["balloons"] and row["error_reserved"] > 0  # measured < predicted: cut short
        return
    assert abs(row["error_reserved"]) <= 7.0, f"{row['error_reserved']:+.2f} %"
    if row["error_nvml"] is not None:
        assert abs(row["error_nvml"]) <= 7.0, f"{row['error_nvml']:+.2f} %"
