"""The caching allocator's own trace from a `vramtui run --snapshot` pickle, as compact
JSON: every action the allocator took (alloc, free_requested, free_completed,
segment_alloc, segment_free, oom...) with its address, size and stream, in order, and
the segments at the snapshot's moment. Run where the pickle is (the GPU machine: the
pickles hold Python stacks and are large); the JSON is what comes back, and
`allocator_trace_replay.py` replays it on any machine.

    python benchmarks/allocator_trace.py RUN.pickle --out RUN-trace.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
from pathlib import Path
from typing import Any


def compact(snap: dict[str, Any], device: int = 0) -> dict[str, Any]:
    """The trace's actions and the segments, without stacks."""
    traces = snap.get("device_traces", [])
    actions = traces[device] if device < len(traces) else []
    events = [
        [e["action"], e.get("addr", 0), e.get("size", 0), e.get("stream", 0)] for e in actions
    ]
    segments = [
        {
            "address": s["address"],
            "total_size": s["total_size"],
            "segment_type": s.get("segment_type", ""),
            "blocks": [[b["size"], b["state"]] for b in s["blocks"]],
        }
        for s in snap.get("segments", [])
        if s.get("device", 0) == device
    ]
    return {"events": events, "segments": segments}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with open(args.snapshot, "rb") as f:
        snap = pickle.load(f)  # noqa: S301 - the engine's own snapshot, read where it was written
    found = compact(snap)
    with gzip.open(args.out, "wt") as f:
        json.dump(found, f)
    print(f"{args.out}: {len(found['events'])} actions, {len(found['segments'])} segments")


if __name__ == "__main__":
    main()
