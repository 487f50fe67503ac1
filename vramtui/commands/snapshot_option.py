"""`--snapshot` on `vramtui run` and the app: where the allocator snapshot goes, checked
before anything runs (CUDA only)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from pathlib import Path

from vramtui.errors import UsageError
from vramtui.report.export import check_writable
from vramtui.report.sessions import free_stem, safe_name, sessions_dir
from vramtui.spec import ResolvedRun

SUFFIX = ".snapshot.pickle"


def add_snapshot_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="CUDA only: record the caching allocator's history and save its snapshot at the "
        "run's peak (or its out-of-memory) beside the session, for PyTorch's memory_viz; "
        "the top allocations at that moment are listed with the peaks",
    )


def snapshot_path(
    resolved: ResolvedRun, beside: str | None, folder: Path, when: datetime, force: bool
) -> Path:
    """The snapshot's file: beside the session's file where one is named, else a new
    timestamped name in `folder`."""
    if resolved.backend != "cuda":
        raise UsageError(
            f"--snapshot records the CUDA caching allocator: not available on {resolved.device}",
            field="device",
        )
    if beside:
        return check_writable(Path(beside).with_suffix(SUFFIX), force=force)
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(f"{when:%Y%m%d-%H%M%S}-{resolved.spec.model}")
    return folder / (free_stem(folder, stem, (SUFFIX,)) + SUFFIX)


def with_snapshot(
    resolved: ResolvedRun,
    args: argparse.Namespace,
    beside: str | None,
    folder: Path | None = None,
) -> ResolvedRun:
    """The run with its snapshot's path in the spec, when --snapshot was given."""
    if not getattr(args, "snapshot", False):
        return resolved
    where = folder if folder is not None else sessions_dir()
    path = snapshot_path(resolved, beside, where, datetime.now(), getattr(args, "force", False))
    spec = dataclasses.replace(resolved.spec, snapshot=str(path))
    return dataclasses.replace(resolved, spec=spec)
