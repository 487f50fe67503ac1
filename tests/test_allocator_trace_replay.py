"""benchmarks/allocator_trace_replay.py: a trace of PyTorch's caching allocator on a GPU,
replayed through vramtui's allocator model, makes the same segments action by action;
a sequence of requests the allocator did not see does not."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from helpers import benchmark_script

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "benchmarks" / "results" / "allocator_trace"


def _events(name: str) -> list[list[Any]]:
    with gzip.open(TRACES / f"{name}-trace.json.gz", "rt") as f:
        events: list[list[Any]] = json.load(f)["events"]
    return events


def test_the_model_makes_the_segments_the_gpus_allocator_made() -> None:
    replay = benchmark_script("allocator_trace_replay").replay
    # llama-3.2-1b, eager, an 8000-token prompt: score matrices of 4.1 and 8.2 GB
    real, model, real_segments, model_segments, first, requests = replay(
        _events("llama-eager-8000")
    )
    summary = json.loads((TRACES / "llama-eager-8000.json").read_text())
    assert first is None and real == model == summary["peak_reserved_bytes"] - 2_097_152
    assert real_segments == model_segments == 13 and requests == 992


def test_a_sequence_the_allocator_did_not_see_makes_other_segments() -> None:
    replay = benchmark_script("allocator_trace_replay").replay
    events = _events("llama-eager-8000")
    big = next(
        i for i, e in enumerate(events) if e[0] == "free_completed" and e[2] == 4_096_000_000
    )
    *_, first, _ = replay(events[:big] + events[big + 1 :])  # one score matrix kept alive
    assert first is not None and first >= big
