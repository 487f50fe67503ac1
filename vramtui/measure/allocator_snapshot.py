"""What held the bytes at one moment, read from a CUDA caching-allocator snapshot.

Pure Python over the dictionary `torch.cuda.memory._snapshot()` returns (the format
documented there and read by PyTorch's memory_viz): `segments`, each with its `blocks`
(size, state, frames of the Python stack that allocated it), and `device_traces`, one
list a device of the allocator's actions (alloc, free_requested, free_completed,
segment_alloc, segment_free, oom, snapshot), each with its address, size and frames.

The snapshot is taken at the end of a step, after that step's transients were freed;
the moment that matters is inside it. So the live set at the end is walked back
through the trace: an allocation after the moment is taken out, a free after it is put
back. The moment is the trace's highest allocated figure (`peak`), or the allocation
that failed (`oom`, where the trace holds one). Each live allocation is then named by
the frames that made it: loading the model -> weights, the transformers cache -> KV
cache, a forward or generate -> transient, else other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vramtui.measure import events as ev

KINDS = ("weights", "KV cache", "transient", "other")
TOP = 12  # allocations listed
# Frames that load a model: transformers' from_pretrained, and vramtui's own builder.
_LOAD_NAMES = {"from_pretrained", "_load_pretrained_model", "load_random", "materialise"}
_LOAD_FRAMES = {("vramtui/measure/engine/model.py", "build")}  # (file ending, function)
_LOAD_FILES = ("vramtui/measure/engine/random_weights.py",)
_RUN_NAMES = {"forward", "generate", "_sample", "_prefill", "greedy_search"}
# Frames that are torch's own plumbing, skipped when naming the frame that made a block.
PLUMBING = ("/torch/", "\\torch\\", "<frozen", "/contextlib.py", "/functools.py")


@dataclass(frozen=True)
class Allocation:
    size: int  # the block's bytes, rounding included; what was asked, if freed before the snapshot
    requested: int  # what the tensor asked for
    kind: str  # one of KINDS
    frame: str  # "file.py:123 name": where it was made (torch's own frames skipped)


@dataclass(frozen=True)
class Moment:
    """The live allocations at one moment of a snapshot's trace."""

    reason: str  # peak | oom | end (no trace: the state when the snapshot was taken)
    allocated_bytes: int  # live at that moment
    by_kind: dict[str, int]  # bytes per kind, every live allocation counted
    top: list[Allocation]  # the largest, largest first
    count: int  # live allocations at that moment
    trace_entries: int  # the allocator actions the snapshot holds
    trace_index: int | None  # where in the trace the moment is (None: the end)
    requested_bytes: int | None = None  # oom: the allocation that failed
    notes: list[str] = field(default_factory=list)  # limits met, said to the reader


def _where(frame: dict[str, Any]) -> str:
    name = str(frame.get("filename", "?")).replace("\\", "/").rsplit("/", 1)[-1]
    return f"{name}:{frame.get('line', '?')} {frame.get('name', '?')}"


def made_by(frames: Sequence[dict[str, Any]]) -> str:
    """The innermost frame outside torch's plumbing (the line a person wrote)."""
    for frame in frames:
        filename = str(frame.get("filename", ""))
        if not any(part in filename for part in PLUMBING):
            return _where(frame)
    return _where(frames[0]) if frames else "no Python frames recorded"


def kind_of(frames: Sequence[dict[str, Any]]) -> str:
    """weights | KV cache | transient | other, by the Python frames that allocated it."""
    files = [str(f.get("filename", "")).replace("\\", "/") for f in frames]
    names = [str(f.get("name", "")) for f in frames]
    pairs = list(zip(files, names, strict=True))
    if any(
        n in _LOAD_NAMES
        or f.endswith(_LOAD_FILES)
        or any(f.endswith(e) and n == m for e, m in _LOAD_FRAMES)
        for f, n in pairs
    ):
        return "weights"
    if any(f.endswith("cache_utils.py") for f in files):
        return "KV cache"
    if any(n in _RUN_NAMES for n in names):
        return "transient"
    return "other"


def _live_blocks(segments: Iterable[dict[str, Any]], device: int) -> dict[int, dict[str, Any]]:
    """address -> block, for every block on `device` in use when the snapshot was taken."""
    live: dict[int, dict[str, Any]] = {}
    for segment in segments:
        if segment.get("device", device) != device:
            continue
        address = int(segment.get("address", 0))
        for block in segment.get("blocks", []):
            size = int(block["size"])
            if block.get("state") == "active_allocated":
                live[int(block.get("address", address))] = block
            address += size
    return live


def _trace_unit(live: dict[int, dict[str, Any]], trace: Sequence[dict[str, Any]]) -> str:
    """Which of a block's figures the trace's sizes are: torch records the size asked for
    ("requested_size") where the blocks say what they hold ("size"). Told by the blocks
    allocated inside the trace and still live."""
    asked = {int(e["addr"]): int(e["size"]) for e in trace if e.get("action") == "alloc"}
    votes = {"requested_size": 0, "size": 0}
    for addr, block in live.items():
        size = asked.get(addr)
        for unit in votes:
            if size is not None and size == block.get(unit):
                votes[unit] += 1
    return "requested_size" if votes["requested_size"] > votes["size"] else "size"


def _delta(entry: dict[str, Any]) -> int:
    """What an action did to the allocated bytes."""
    action = entry.get("action")
    if action == "alloc":
        return int(entry["size"])
    if action == "free_completed":
        return -int(entry["size"])
    return 0


def _moment_index(trace: Sequence[dict[str, Any]], end_bytes: int, reason: str) -> int | None:
    """The index after which the moment is: the trace's highest allocated figure, or the
    failed allocation. None: the end."""
    if reason == "oom":
        fails = [i for i, e in enumerate(trace) if e.get("action") == "oom"]
        if fails:
            return fails[-1]
    current, best, best_i = end_bytes, end_bytes - 1, None
    for i in range(len(trace) - 1, -1, -1):  # allocated after entry i is `current`
        if current >= best:  # the earliest moment of the highest figure
            best, best_i = current, i
        current -= _delta(trace[i])
    return -1 if current > best else best_i  # -1: before the first action kept


def _undo(live: dict[int, dict[str, Any]], entries: Iterable[dict[str, Any]]) -> None:
    """Walk `live` back over `entries` (latest first)."""
    for entry in entries:
        action = entry.get("action")
        if action == "alloc":
            live.pop(int(entry["addr"]), None)
        elif action == "free_completed":
            live[int(entry["addr"])] = {  # freed before the snapshot: its block size is not known
                "size": entry["size"],
                "requested_size": entry["size"],
                "frames": entry.get("frames", []),
            }


def moment(snapshot: dict[str, Any], device: int = 0, reason: str = "peak") -> Moment:
    """The live allocations at the run's peak (or its failed allocation) in `snapshot`."""
    live = _live_blocks(snapshot.get("segments", []), device)
    traces = snapshot.get("device_traces") or []
    trace: list[dict[str, Any]] = list(traces[device]) if device < len(traces) else []
    unit = _trace_unit(live, trace)
    end_bytes = sum(int(b.get(unit) or b["size"]) for b in live.values())
    index = _moment_index(trace, end_bytes, reason) if trace else None
    notes = []
    if index is not None:
        _undo(live, reversed(trace[index + 1 :]))
    if index == -1:
        notes.append("the highest figure is where the trace begins: the peak may be earlier")
    failed = trace[index] if reason == "oom" and index is not None and index >= 0 else None
    if reason == "oom" and (failed is None or failed.get("action") != "oom"):
        notes.append("the trace holds no failed allocation: its highest figure before the failure")
        failed = None
    if not trace:
        notes.append("no allocator trace: the state when the snapshot was taken")
    if any(not b.get("frames") for b in live.values()):
        notes.append("some blocks have no frames (allocated before recording began)")
    allocations = [
        Allocation(
            size=int(b["size"]),
            requested=int(b.get("requested_size") or b["size"]),
            kind=kind_of(b.get("frames", [])),
            frame=made_by(b.get("frames", [])),
        )
        for b in live.values()
    ]
    by_kind = {k: sum(a.size for a in allocations if a.kind == k) for k in KINDS}
    return Moment(
        reason=reason if index is not None or reason == "oom" else "end",
        allocated_bytes=sum(a.size for a in allocations),
        by_kind=by_kind,
        top=sorted(allocations, key=lambda a: (-a.size, a.frame))[:TOP],
        count=len(allocations),
        trace_entries=len(trace),
        trace_index=index,
        requested_bytes=int(failed["size"]) if failed else None,
        notes=notes,
    )


def snapshot_event(
    found: Moment,
    path: str,
    token: int | None,
    phase: str,
    peaks: tuple[int | None, int | None] = (None, None),
    notes: Sequence[str] = (),
) -> ev.AllocationSnapshot:
    """The event that carries a moment to the parent. peaks: (that step's, the run's)."""
    return ev.AllocationSnapshot(
        path=path,
        reason=found.reason,
        token=token,
        phase=phase,
        step_peak=peaks[0],
        run_peak=peaks[1],
        allocated_bytes=found.allocated_bytes,
        by_kind=found.by_kind,
        top=[asdict(a) for a in found.top],
        count=found.count,
        trace_entries=found.trace_entries,
        requested_bytes=found.requested_bytes,
        notes=[*found.notes, *notes],
    )
