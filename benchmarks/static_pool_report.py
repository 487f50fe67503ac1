"""What the CUDA graphs' private pool of a compiled decode step holds.

Reads memory-history snapshots saved by `benchmarks/static_compile_diagnosis.py
... HISTORY.pickle` (torch.cuda.memory._dump_snapshot) and prints, per snapshot,
the private pool's segments, its live peak and its largest allocations grouped
by size and by the code that made them (torch's own frames left out, but the
autotuner's benchmarking).

    python benchmarks/static_pool_report.py SNAPSHOT.pickle [...] > static_pool_report.md
"""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def made_by(event: dict[str, Any], frames: int = 3) -> str:
    """The first frames outside torch's internals (the benchmarker kept)."""
    kept = [
        f
        for f in event.get("frames", [])
        if "site-packages/torch/_" not in f["filename"] or "benchmarking" in f["filename"]
    ]
    return " < ".join(
        f"{Path(f['filename']).name[:24]}:{f['line']} {f['name']}" for f in kept[:frames]
    )


def report(path: Path) -> list[str]:
    snapshot = pickle.loads(path.read_bytes())
    pool = [s for s in snapshot["segments"] if tuple(s.get("segment_pool_id", (0, 0))) != (0, 0)]
    spans = [(s["address"], s["address"] + s["total_size"]) for s in pool]
    live = peak = 0
    made: Counter[tuple[int, str]] = Counter()
    for event in snapshot["device_traces"][0]:
        if not any(lo <= event["addr"] < hi for lo, hi in spans):
            continue
        if event["action"] == "alloc":
            live += event["size"]
            peak = max(peak, live)
            made[(event["size"], made_by(event))] += 1
        elif event["action"] == "free_completed":
            live -= event["size"]
    sizes = ", ".join(f"{s['total_size'] / 2**20:g} MiB {s['segment_type']}" for s in pool)
    total = sum(s["total_size"] for s in pool)
    lines = [
        f"### {path.stem}",
        "",
        f"private pool: {total:,} B in {len(pool)} segments ({sizes});",
        f"live peak inside it {peak:,} B. Largest allocations (bytes x count, made by):",
        "",
    ]
    top = sorted(made.items(), key=lambda kv: -kv[0][0] * kv[1])[:6]
    lines += [f"- {size:,} x {n}: `{where}`" for (size, where), n in top]
    return lines + [""]


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print("\n".join(report(Path(name))))
