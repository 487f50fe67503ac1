"""`--snapshot` on `vramtui run` and the app: where the allocator snapshot goes, checked
before anything runs (CUDA only)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from pathlib import Path

from vramtui.commands.out_option import check_out
from vramtui.errors import UsageError
from vramtui.report.allocations_text import SNAPSHOT_SUFFIX, snapshot_file
from vramtui.report.export import check_writable
from vramtui.runspec import ResolvedRun


def add_snapshot_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="CUDA only: record the caching allocator's history and save its snapshot at the "
        "run's peak (or its out-of-memory) beside the session, for PyTorch's memory_viz; "
        "the top allocations at that moment are listed with the peaks",
    )


def check_cuda(resolved: ResolvedRun) -> None:
    if resolved.backend != "cuda":
        raise UsageError(
            f"--snapshot records the CUDA caching allocator: not available on {resolved.device}",
            field="device",
        )


def with_snapshot(
    resolved: ResolvedRun, args: argparse.Namespace, beside: str | None
) -> ResolvedRun:
    """The run with its snapshot's file in the spec, when --snapshot was given: beside
    the session's file where one is named, else a new timestamped name where the
    session is kept (--out, else the sessions folder)."""
    if not getattr(args, "snapshot", False):
        return resolved
    check_cuda(resolved)
    if beside:
        path = check_writable(Path(beside).with_suffix(SNAPSHOT_SUFFIX), force=args.force)
    else:
        folder = check_out(getattr(args, "out", None))
        path = snapshot_file(folder, resolved.spec.model, datetime.now())
    spec = dataclasses.replace(resolved.spec, snapshot=str(path))
    return dataclasses.replace(resolved, spec=spec)
