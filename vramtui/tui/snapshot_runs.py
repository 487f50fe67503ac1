"""The app's `--snapshot`: each CUDA run gets a snapshot file of its own in the sessions
folder; a run on another device goes without, and says so."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vramtui.report.allocations_text import snapshot_file
from vramtui.runspec import ResolvedRun


def with_snapshot_file(
    run: ResolvedRun, folder: Path, when: datetime, notify: Callable[..., Any]
) -> ResolvedRun:
    if run.backend != "cuda":
        notify(f"--snapshot is CUDA only: no allocator snapshot on {run.device}", timeout=5)
        return run
    path = snapshot_file(folder, run.spec.model, when)
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, snapshot=str(path)))
