"""benchmarks/long_prompt_accuracy.py: every session listed, each completed run scored
against the estimate of the same run, the others listed with their status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import benchmark_script, run_cli

from vramtui.predict.cpu_process import cpu_process

ROOT = Path(__file__).resolve().parent.parent
TINY_LLAMA = ROOT / "tests" / "fixtures" / "tiny-llama.json"
H200_SESSION = ROOT / "benchmarks/results/static-cache/run-llama-3.2-1b-dynamic-h200.json"
TRACED_ACCURACY = ROOT / "benchmarks/results/traced_accuracy/accuracy.json"


def _score(scorer: Any, tmp_path: Path, *sessions: Path) -> list[dict[str, Any]]:
    out = tmp_path / "scored"
    assert scorer.main([*map(str, sessions), "--out", str(out)]) == 0
    assert (out / "long_prompt_accuracy.md").is_file()
    cells: list[dict[str, Any]] = json.loads((out / "long_prompt_accuracy.json").read_text())[
        "cells"
    ]
    return cells


@pytest.mark.slow
@pytest.mark.engine
def test_a_cpu_session_is_scored_against_the_estimate_of_the_same_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real CPU run with eager attention at the tiny model's longest prompt: its RSS is
    scored against what `vramtui estimate` predicts for the same run (tensors plus the
    Python process); a copy that did not complete is listed, not scored."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    run = ("--config", str(TINY_LLAMA), "--device", "cpu", "--prompt-tokens", "100",
           "-n", "4", "--attn", "eager")  # fmt: skip
    saved = sessions / "cpu-eager.json"
    code, _, err = run_cli(capsys, "run", *run, "-q", "--out", str(tmp_path / "kept"),
                           "--json", str(saved))  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "estimate", *run, "--json")
    assert code == 0, err
    predicted = json.loads(out)["peak_allocated_bytes"] + cpu_process().bytes
    summary = json.loads(saved.read_text())
    failed = {**summary, "status": "failed"}
    (sessions / "failed.json").write_text(json.dumps(failed))
    monkeypatch.setattr(sys, "argv", ["long_prompt_accuracy.py"])
    cells = {
        c["file"]: c for c in _score(benchmark_script("long_prompt_accuracy"), tmp_path, sessions)
    }
    assert sorted(cells) == ["cpu-eager.json", "failed.json"]
    cell = cells["cpu-eager.json"]
    assert (cell["model"], cell["prompt_tokens"], cell["attn"], cell["backend"]) == (
        "tiny-llama",
        100,
        "eager",
        "cpu",
    )
    assert cell["measured_allocated"] == summary["peak_allocated_bytes"]
    assert cell["predicted_allocated"] == predicted
    measured = summary["peak_allocated_bytes"]
    assert cell["error_allocated_percent"] == pytest.approx((predicted - measured) / measured * 100)
    assert cell["within_goal"] is (abs(cell["error_allocated_percent"]) <= 1.0)
    assert cells["failed.json"]["status"] == "failed"
    assert cells["failed.json"]["error_allocated_percent"] is None


@pytest.mark.slow
@pytest.mark.engine
def test_a_gpu_session_scores_as_the_held_out_table_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The H200's llama-3.2-1b 8 + 2000 session scores as traced_accuracy.py's row of the
    same cell (measured by `vramtui bench`, a separate engine run): the same estimate."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (cell,) = _score(benchmark_script("long_prompt_accuracy"), tmp_path, H200_SESSION)
    assert cell["status"] == "completed" and cell["backend"] == "cuda"
    rows = json.loads(TRACED_ACCURACY.read_text())["rows"]
    (row,) = [r for r in rows if r["model"] == "llama-3.2-1b" and r["prompt_tokens"] == 8
              and r["tokens"] == 2000 and r["cache"] == "dynamic"]  # fmt: skip
    assert cell["measured_allocated"] == row["measured_allocated"]
    assert cell["predicted_allocated"] == row["predicted_allocated"]
    assert cell["within_goal"] is True
