from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vramtui.measure import events as ev
from vramtui.measure.session import Environment, NvmlSample, Session, SessionView
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report.export import CSV_COLUMNS, atomic_write, safe_cell, write_csv, write_json
from vramtui.runspec import RunSpec

REQUIRED_JSON = (
    "status",
    "tokens_generated",
    "tokens_per_s",
    "weights_bytes",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
    "peak_nvml_process_bytes",
    "spec",
    "environment",
)


def synthetic_session() -> SessionView:
    """A GPU-like run: engine samples and NVML readings on one clock."""
    s = Session(RunSpec(model="opt-x", tokens=3), Environment(vramtui="test"), t0=100.0)
    s.apply(ev.Hello(42, "cuda:0", "cuda", "GPU", "u", 80_000, "torch.cuda", {"torch": "t"}))
    s.apply(ev.Phase("load", 100.1))
    s.add_nvml(NvmlSample(100.15, 600, 1600, 80_000))
    s.apply(ev.Sample(None, 100.2, "load", 1000, 2000, 1100, None))
    s.apply(ev.Loaded(1000, 500, "float16", 2048, 2, 8, 2, 4, 8, 0.1, "opt"))
    s.apply(ev.Phase("prefill", 100.3))
    s.add_nvml(NvmlSample(100.35, 2700, 3700, 80_000))
    for i in range(3):
        s.apply(ev.Sample(i, 100.4 + i * 0.1, "decode", 1010 + i, 2100, 1500 - i, 64 * (i + 9)))
        if i == 0:
            s.apply(ev.Phase("decode", 100.41))
        s.add_nvml(NvmlSample(100.45 + i * 0.1, 2800 + i, 3800 + i, 80_000))
    s.apply(ev.Phase("done", 100.8))
    s.apply(ev.Done(3, 0.1, 0.1, 0.2, 0.3, 10.0, 10.0, 1500))
    return s.snapshot()


def test_csv_round_trips_through_pandas(tmp_path: Path) -> None:
    import pandas as pd

    path = write_csv(synthetic_session(), tmp_path / "s.csv")
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == CSV_COLUMNS
    steps = frame[(frame.source == "engine") & frame.token.notna()]
    assert list(steps.token) == [0, 1, 2]
    assert list(steps.phase) == ["prefill", "decode", "decode"]  # token 0's step: the prefill
    assert list(steps.allocated_bytes) == [1010, 1011, 1012]
    assert list(steps.step_peak_bytes) == [1500, 1499, 1498]
    nvml = frame[frame.source == "nvml"]
    assert len(nvml) == 5
    assert nvml.nvml_process_bytes.max() == 2802
    assert frame.t_s.is_monotonic_increasing
    # Empty where a source has no value.
    assert steps.nvml_process_bytes.isna().all()
    assert nvml.allocated_bytes.isna().all()


def test_nvml_rows_line_up_with_the_token_axis(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(write_csv(synthetic_session(), tmp_path / "s.csv"))
    nvml = frame[frame.source == "nvml"]
    # A reading during a step belongs to the token that step produces.
    assert list(nvml.token.fillna(-1).astype(int)) == [-1, 0, 1, 2, 3]
    assert list(nvml.phase) == ["load", "prefill", "decode", "decode", "decode"]


def test_json_summary_has_the_documented_fields(tmp_path: Path) -> None:
    summary = json.loads(write_json(synthetic_session(), tmp_path / "s.json").read_text())
    for field in REQUIRED_JSON:
        assert field in summary
    assert summary["status"] == "completed"
    assert summary["peak_allocated_bytes"] == 1500  # the largest step peak
    assert summary["peak_reserved_bytes"] == 2100
    assert summary["peak_nvml_process_bytes"] == 2802
    assert summary["peaks"]["step_peak"]["token"] == 0
    assert summary["peaks"]["step_peak"]["phase"] == "prefill"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.parametrize("text", ["=cmd()", "+1", "-2+3", "@SUM(A1)"])
def test_csv_cells_cannot_start_a_formula(text: str) -> None:
    assert safe_cell(text).startswith("'")
    assert safe_cell("opt-125m") == "opt-125m"


def test_nvml_history_stays_bounded_and_keeps_the_peak() -> None:
    s = Session(RunSpec(model="m", tokens=1), t0=0.0, max_nvml_samples=64)
    s.apply(ev.Phase("decode", 0.0))
    for i in range(10_000):
        value = 5_000 if i == 7_777 else i % 100
        s.add_nvml(NvmlSample(0.001 * (i + 1), value, value, 10_000))
    view = s.snapshot()
    assert len(view.nvml) <= 64
    assert max(n.process_bytes for n in view.nvml) == 5_000  # thinning keeps the larger
    assert view.peaks["nvml_process"].value == 5_000
    assert summary_of(view)["nvml_samples"] == 10_000
