"""Summarise the runs of benchmarks/snapshot_gpu.sh: the cost of --snapshot, and whether
the snapshot's moment is the run's peak.

    python3 benchmarks/snapshot_summary.py WORK_DIR OUT_DIR

WORK_DIR holds NAME.json (session summaries) and NAME.snapshot.pickle of the runs
plain1, plain2, snap1, snap2, hook_oom, real_oom. Writes OUT_DIR/snapshot_summary.json (small),
OUT_DIR/allocator-snapshot-h200.json.gz (snap1's snapshot trimmed into a test fixture:
every live block, the newest TRACE_KEPT actions, at most FRAMES_KEPT frames each, with
the figures the engine measured on its own) and prints one line per check.
"""

from __future__ import annotations

import gzip
import json
import pickle
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402

from vramtui.measure.allocator_snapshot import PLUMBING, moment  # noqa: E402

TRACE_KEPT = 4000
FRAMES_KEPT = 8


def load(work: Path, name: str) -> dict[str, Any] | None:
    path = work / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def rate(summary: dict[str, Any] | None) -> float | None:
    return summary.get("decode_tokens_per_s") if summary else None


def trim_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mine = [f for f in frames if not any(p in str(f.get("filename", "")) for p in PLUMBING)]
    return [{k: f[k] for k in ("filename", "line", "name") if k in f} for f in mine[:FRAMES_KEPT]]


def fixture(snap: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    segments = []
    for seg in snap.get("segments", []):
        blocks = [{**b, "frames": trim_frames(b.get("frames", []))} for b in seg.get("blocks", [])]
        segments.append({**seg, "blocks": blocks})
    traces = [
        [{**e, "frames": trim_frames(e.get("frames", []))} for e in trace[-TRACE_KEPT:]]
        for trace in snap.get("device_traces", [])
    ]
    return {"segments": segments, "device_traces": traces, "_measured": measured}


def check_run(name: str, summary: dict[str, Any] | None, work: Path) -> dict[str, Any]:
    if summary is None:
        print(f"{name}: no session JSON")
        return {"name": name, "missing": True}
    snap = summary.get("allocation_snapshot") or {}
    pickle_path = work / f"{name}.snapshot.pickle"
    out = {
        "name": name,
        "status": summary["status"],
        "failure": summary.get("failure"),
        "tokens": summary["tokens_generated"],
        "decode_tokens_per_s": rate(summary),
        "peak_allocated_bytes": summary["peak_allocated_bytes"],
        "weights_bytes": summary.get("weights_bytes"),
        "pickle_bytes": pickle_path.stat().st_size if pickle_path.is_file() else None,
        "snapshot": {k: v for k, v in snap.items() if k != "top"}
        | {"top": snap.get("top", [])[:6]},
    }
    if snap:
        if snap["reason"] == "oom":
            failure = summary.get("failure") or {}
            asked = snap.get("requested_bytes")
            against = (
                f"the failed allocation asked {asked:,} B"
                if asked is not None
                else "no failed allocation in the trace (raised by Python)"
            ) + f" ({failure.get('kind')}: {failure.get('message')})"
        else:
            step = snap.get("step_peak") or 0
            against = (
                f"the step's peak by the probe {step:,} B "
                f"(live at the moment minus it: {snap['allocated_bytes'] - step:+,} B)"
            )
        print(
            f"{name}: {summary['status']}, snapshot {snap['reason']} at token {snap['token']}: "
            f"{snap['allocated_bytes']:,} B live at the moment, {against}; by kind "
            f"{snap['by_kind']}; weights loaded {summary.get('weights_bytes') or 0:,} B; "
            f"pickle {out['pickle_bytes'] or 0:,} B; top: "
            + "; ".join(f"{a['size']:,} {a['kind']} {a['frame']}" for a in snap["top"][:3])
        )
    else:
        print(f"{name}: {summary['status']}, no snapshot")
    return out


def main(work: Path, out: Path) -> int:
    runs = {
        n: load(work, n) for n in ("plain1", "plain2", "snap1", "snap2", "hook_oom", "real_oom")
    }
    plain = [r for r in (rate(runs["plain1"]), rate(runs["plain2"])) if r]
    snap = [r for r in (rate(runs["snap1"]), rate(runs["snap2"])) if r]
    cost = None
    if plain and snap:
        cost = round((statistics.mean(snap) / statistics.mean(plain) - 1) * 100, 1)
    print(f"decode tok/s without --snapshot {plain}, with {snap}: {cost} %")
    env = next((r["environment"] for r in runs.values() if r), {})
    result = {
        "what": "vramtui run -m opt-1.3b -n 300 with and without --snapshot; OOM runs",
        "environment": {
            k: env.get(k)
            for k in ("device_name", "driver", "torch", "transformers", "cuda_runtime", "vramtui")
        },
        "decode_tokens_per_s": {"without": plain, "with_snapshot": snap},
        "snapshot_cost_percent": cost,
        "runs": [check_run(n, r, work) for n, r in runs.items()],
    }
    write_json(out / "snapshot_summary.json", result)
    snap1, pickle_path = runs["snap1"], work / "snap1.snapshot.pickle"
    if snap1 and pickle_path.is_file():
        raw = pickle.loads(pickle_path.read_bytes())
        event = snap1["allocation_snapshot"]
        measured = {"step_peak": event["step_peak"], "weights_bytes": snap1["weights_bytes"],
                    "token": event["token"], "device": 0}  # fmt: skip
        data = fixture(raw, measured)
        trimmed = moment(data, 0, "peak")
        print(
            f"trimmed fixture: {trimmed.allocated_bytes:,} B at its moment (minus the step "
            f"peak: {trimmed.allocated_bytes - (event['step_peak'] or 0):+,} B), weights by "
            f"frames {trimmed.by_kind['weights']:,} B (loaded: {snap1['weights_bytes'] or 0:,} B)"
        )
        with gzip.open(out / "allocator-snapshot-h200.json.gz", "wt") as f:
            json.dump(data, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
