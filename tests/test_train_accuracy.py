"""benchmarks/train_accuracy.py scores the training estimate against a run's JSON summary:
here a summary made on the CPU from a real training run of a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_LLAMA, benchmark_script

from vramtui.predict.training.step_tracer import EventTracker, Request, build, run_steps
from vramtui.predict.training.trace import live_bytes
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec

pytest.importorskip("peft", reason="the .[train] extra is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.engine]  # the estimate starts a tracer


def _measured_on_cpu(spec: TrainSpec, config: dict[str, object]) -> tuple[int, str]:
    """(peak bytes of live tensors, "step S, phase") of two real training steps."""
    request = Request(
        config=dict(config), method=spec.method, batch=spec.base.batch, seq=spec.seq,
        dtype="float32", attn=spec.base.attn, backend="cpu",
    )  # fmt: skip
    torch.manual_seed(0)
    model = build(request, device="cpu")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    tracker = EventTracker(1)
    run_steps(model, request, tracker)
    best, where = -1, ""
    for (step, phase, start), nxt in zip(tracker.marks, tracker.marks[1:], strict=False):
        peak = max(live_bytes(tracker.events[:i])[0] for i in range(start, nxt[2] + 1))
        if peak > best:
            best, where = peak, f"step {step}, {phase}"
    return weights + best, where


def test_a_cpu_summary_is_scored_cell_by_cell(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(TINY_LLAMA))
    base = RunSpec(model="tiny-llama", source="config", path=str(config_path), device="cpu",
                   batch=2, dtype="float32", attn="eager")  # fmt: skip
    spec = TrainSpec(base=base, method="lora", seq=24)
    measured, where = _measured_on_cpu(spec, TINY_LLAMA)
    summary = {
        "vramtui_summary_version": 1,
        "status": "completed",
        "spec": spec.to_dict(),
        "peak_allocated_bytes": measured,
        "peak_reserved_bytes": measured,
        "peak_nvml_process_bytes": None,
        "training": {"peak": {"value": measured, "step": int(where.split()[1][:-1]),
                              "phase": where.split(", ")[1]}},
        "environment": {},
    }  # fmt: skip
    path = tmp_path / "lora.json"
    path.write_text(json.dumps(summary))
    scorer = benchmark_script("train_accuracy")
    out = tmp_path / "accuracy"
    assert scorer.main([str(path), "--out", str(out)]) == 0
    (cell,) = json.loads(out.with_suffix(".json").read_text())["cells"]
    assert cell["error_allocated_percent"] == 0.0
    assert cell["error_nvml_percent"] is None  # not measured on the CPU
    assert cell["measured_peak"] == cell["predicted_peak"] == where
    assert "allocated: 1 of 1 cells within 1.0 %" in out.with_suffix(".md").read_text()
