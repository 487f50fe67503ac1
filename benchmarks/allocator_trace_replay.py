"""The allocator model against the caching allocator itself: each recorded trace
(allocator_trace_gpu.sh) replayed through vramtui's CachingAllocator
(vramtui/predict/allocator.py), the real requests and frees in the real order, and
the reserved bytes compared after every action with the segments the real allocator
made. Where they agree to the byte throughout, the allocator's rules are not what an
estimate misses: the sequence of requests the estimate assumes is.

    python benchmarks/allocator_trace_replay.py DIR/*-trace.json.gz --out RESULT.json
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import write_json  # benchmarks/ is sys.path[0] for a script

from vramtui.predict.allocator import CachingAllocator, Handle, PoolRules


@dataclass(frozen=True)
class Replayed:
    trace: str
    actions: int
    requests: int
    real_reserved_bytes: int  # at the trace's end (the snapshot's moment)
    model_reserved_bytes: int
    real_segments: int
    model_segments: int
    first_difference: int | None  # the first action after which reserved differs


def replay(events: list[list[Any]]) -> tuple[int, int, int, int, int | None, int]:
    """(real reserved, model reserved, real segments, model segments, the first action
    where they differ, requests) after replaying `events`."""
    pool = CachingAllocator(PoolRules())
    handles: dict[int, Handle] = {}
    real = segments = requests = 0
    first = None
    for i, (action, addr, size, _stream) in enumerate(events):
        if action == "alloc":
            handles[addr] = pool.malloc(size)
            requests += 1
        elif action == "free_completed" and addr in handles:
            pool.free(handles.pop(addr))
        elif action == "segment_alloc":
            real, segments = real + size, segments + 1
        elif action == "segment_free":
            real, segments = real - size, segments - 1
        if first is None and action in ("alloc", "segment_free") and pool.reserved != real:
            first = i
    return real, pool.reserved, segments, len(pool.segments), first, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for path in args.traces:
        with gzip.open(path, "rt") as f:
            events = json.load(f)["events"]
        real, model, real_segs, model_segs, first, requests = replay(events)
        row = Replayed(path.name, len(events), requests, real, model, real_segs, model_segs, first)
        rows.append(row)
        same = "same" if first is None else f"differs from action {first}"
        print(f"{path.name}: {requests} requests, reserved {real:,} B, model {model:,} B ({same})")
    write_json(args.out, {"replayed": [asdict(r) for r in rows]})


if __name__ == "__main__":
    main()
