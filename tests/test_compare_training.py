"""`vramtui compare` of training sessions: what sets the recipes apart, each phase's peak
and the training parts at each run's peak, side by side, read back from saved files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vramtui.cli import main
from vramtui.report.comparison_text import change
from vramtui.report.export import write_csv, write_json
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic_train import MB, Shape, synthetic_training
from vramtui.units import format_bytes

FULL = TrainSpec(base=RunSpec(model="llama-3.2-1b", device="cuda:0", dtype="bfloat16"), steps=2)


def saved(spec: TrainSpec, folder: Path, stem: str, shape: Shape | None = None) -> Path:
    session = ReplayRecorder(spec, synthetic_training(spec, shape)).session.snapshot()
    write_csv(session, folder / f"{stem}.csv")
    return write_json(session, folder / f"{stem}.json")


def row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(label))


def test_two_training_sessions_compare_phase_by_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    longer = replace(FULL, seq=2048, grad_checkpointing=True)
    a = saved(FULL, tmp_path, "a")
    b = saved(longer, tmp_path, "b", Shape(layer_activations=400 * MB))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "they differ in: seq, grad_checkpointing" in out
    assert "(2 training steps)" in out
    assert "Training: each phase's peak, and the parts at the run's peak" in out
    forward = [1000 * MB + 2000 * MB + 8 * layer * MB for layer in (120, 400)]  # step 2
    assert change(*forward) in row(out, "forward peak")
    saved_acts = row(out, "activations saved for backward")
    assert (
        format_bytes(8 * 120 * MB, 2) in saved_acts and format_bytes(8 * 400 * MB, 2) in saved_acts
    )
    assert row(out, "peak in").split()[2:] == ["optimizer,", "step", "1", "backward,", "step", "2"]
    assert "No breakdown" not in out and "Breakdown at each run's peak step" not in out
