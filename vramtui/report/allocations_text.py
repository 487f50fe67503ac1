"""The top allocations of a session's allocator snapshot (`--snapshot`), as text rows.

Reads a session's events.AllocationSnapshot; shared by `vramtui show`, `vramtui run`
and the app's summary screen.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from vramtui.measure import events as ev
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


def moment_line(snap: ev.AllocationSnapshot) -> str:
    """Where the snapshot was taken and what was live: one line."""
    step = f"token {snap.token}" if snap.token is not None else str(snap.phase or "—")
    line = (
        f"What held the bytes {_REASONS.get(snap.reason, snap.reason)} "
        f"({step}, {snap.phase}): {format_bytes(snap.allocated_bytes, 2)} "
        f"in {snap.count} allocations"
    )
    if snap.requested_bytes:
        line += f"; the allocation that failed asked {format_bytes(snap.requested_bytes, 2)}"
    return line


def kind_line(snap: ev.AllocationSnapshot) -> str:
    by_kind = snap.by_kind or {}
    return " · ".join(f"{k} {format_bytes(by_kind.get(k, 0), 2)}" for k in KINDS)


def allocation_rows(snap: ev.AllocationSnapshot) -> list[tuple[str, str, str]]:
    """(size, kind, frame) for each of the largest allocations, largest first."""
    return [(format_bytes(a["size"], 2), a["kind"], a["frame"]) for a in snap.top or []]


def file_line(snap: ev.AllocationSnapshot) -> str:
    if not snap.path:
        return "the snapshot file was not written"
    return f"snapshot: {snap.path} (opens in https://pytorch.org/memory_viz)"


def allocations_text(snap: ev.AllocationSnapshot | None) -> str | None:
    """The snapshot section of a summary, or None where the run took none."""
    if snap is None:
        return None
    lines = [moment_line(snap), kind_line(snap), ""]
    rows = allocation_rows(snap)
    if rows:
        lines.append(table(rows, ALLOCATION_HEADER))
    lines.append(file_line(snap))
    lines += [f"note: {n}" for n in snap.notes or []]
    return "\n".join(lines)


def snapshot_file(folder: Path, model: str, when: datetime) -> Path:
    """A new timestamped snapshot file in `folder` (made if missing), next to the sessions."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(f"{when:%Y%m%d-%H%M%S}-{model}")
    return folder / (free_stem(folder, stem, (SNAPSHOT_SUFFIX,)) + SNAPSHOT_SUFFIX)
