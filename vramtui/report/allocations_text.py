"""The top allocations of a session's allocator snapshot (`--snapshot`), as text rows.

Reads the `allocation_snapshot` entry of a session's JSON summary (an
events.AllocationSnapshot as plain data); shared by `vramtui show`, `vramtui run`
and the app's summary screen.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from vramtui.measure.allocator_snapshot import KINDS
from vramtui.report.sessions import free_stem, safe_name
from vramtui.report.tables import table
from vramtui.units import format_bytes

ALLOCATION_HEADER = ("size", "kind", "made by")
SNAPSHOT_SUFFIX = ".snapshot.pickle"
_REASONS = {
    "peak": "at the run's peak",
    "oom": "at the out-of-memory",
    "end": "when it was taken",
}


def moment_line(snap: dict[str, Any]) -> str:
    """Where the snapshot was taken and what was live: one line."""
    token = snap.get("token")
    step = f"token {token}" if token is not None else str(snap.get("phase") or "—")
    line = (
        f"What held the bytes {_REASONS.get(snap['reason'], snap['reason'])} "
        f"({step}, {snap.get('phase')}): {format_bytes(snap['allocated_bytes'], 2)} "
        f"in {snap['count']} allocations"
    )
    if snap.get("requested_bytes"):
        line += f"; the allocation that failed asked {format_bytes(snap['requested_bytes'], 2)}"
    return line


def kind_line(snap: dict[str, Any]) -> str:
    by_kind = snap.get("by_kind") or {}
    return " · ".join(f"{k} {format_bytes(by_kind.get(k, 0), 2)}" for k in KINDS)


def allocation_rows(snap: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(size, kind, frame) for each of the largest allocations, largest first."""
    return [(format_bytes(a["size"], 2), a["kind"], a["frame"]) for a in snap.get("top") or []]


def file_line(snap: dict[str, Any]) -> str:
    path = snap.get("path")
    if not path:
        return "the snapshot file was not written"
    return f"snapshot: {path} (opens in https://pytorch.org/memory_viz)"


def allocations_text(summary: dict[str, Any]) -> str | None:
    """The snapshot section of a summary, or None where the run took none."""

    snap = summary.get("allocation_snapshot")
    if not snap:
        return None
    lines = [moment_line(snap), kind_line(snap), ""]
    rows = allocation_rows(snap)
    if rows:
        lines.append(table(rows, ALLOCATION_HEADER))
    lines.append(file_line(snap))
    lines += [f"note: {n}" for n in snap.get("notes") or []]
    return "\n".join(lines)


def snapshot_file(folder: Path, model: str, when: datetime) -> Path:
    """A new timestamped snapshot file in `folder` (made if missing), next to the sessions."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(f"{when:%Y%m%d-%H%M%S}-{model}")
    return folder / (free_stem(folder, stem, (SNAPSHOT_SUFFIX,)) + SNAPSHOT_SUFFIX)
