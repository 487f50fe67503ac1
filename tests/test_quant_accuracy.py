"""benchmarks/quant_accuracy.py: every completed quantized cell of a bench CSV or a
quant_table JSON predicted as `vramtui estimate` would, its errors, every cell listed."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from vramtui.models.opt import opt_model
from vramtui.predict.estimator import estimate

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "quant_accuracy.py"
H100 = 85_520_809_984


def load_script(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("quant_accuracy", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def row(quant: str, label: str, status: str = "completed", **figures: int) -> dict[str, str]:
    """A bench CSV row whose figures are the estimate's own (scaled by `figures`)."""
    est = estimate(opt_model("opt-1.3b"), quant=quant, double_quant=label.endswith("+dq"),
                   tokens=20)  # fmt: skip
    measured = {
        "weights_bytes": est.weights_bytes,
        "peak_allocated_bytes": est.peak_allocated_bytes,
        "peak_reserved_bytes": est.peak_reserved_bytes,
        "peak_nvml_process_bytes": est.peak_total_bytes,
        **figures,
    }
    return {
        "model": "opt-1.3b", "quant": quant, "quant_label": label, "status": status,
        "tokens": "20", "prompt_tokens": "8", "batch": "1", "dtype": "float16",
        "attn": "sdpa", "cache": "dynamic", "device_total_bytes": str(H100),
        "device_name": "NVIDIA H100 80GB HBM3", "driver": "test", "torch": "test",
        "transformers": "test", **{k: str(v) for k, v in measured.items()},
    }  # fmt: skip


def test_every_quantized_cell_is_listed_with_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script(monkeypatch)
    exact = row("nf4", "nf4+dq")
    off = row("int8", "int8")
    off["peak_allocated_bytes"] = str(int(off["peak_allocated_bytes"]) * 100 // 98)
    rows = [exact, off, row("none", "none"), row("nf4", "nf4", status="failed")]
    bench = tmp_path / "bench.csv"
    with bench.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(exact))
        writer.writeheader()
        writer.writerows(rows)
    table = tmp_path / "quant_table-short.json"
    table.write_text(json.dumps({"sweeps": [{"cells": [row("nf4", "nf4")]}]}))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["quant_accuracy.py", str(bench), str(table), "--out",
                                      str(out)])  # fmt: skip
    assert script.main() == 0
    data = json.loads((out / "accuracy.json").read_text())
    cells = data["cells"]
    # the unquantized and the failed cells are left out; the JSON's cell is read
    assert [(c["quant"], c["file"]) for c in cells] == [
        ("nf4+dq", "bench.csv"), ("int8", "bench.csv"), ("nf4", "quant_table-short.json")
    ]  # fmt: skip
    assert cells[0]["error_allocated_percent"] == 0.0
    assert cells[1]["error_allocated_percent"] == pytest.approx(-2.0, abs=0.01)
    text = (out / "accuracy.md").read_text()
    assert "Within the goals: allocated (1 %) 2, NVML (3 %) 3" in text
    assert "- miss: opt-1.3b int8 8 + 20 batch 1: allocated -2.00 %" in text
    capsys.readouterr()
