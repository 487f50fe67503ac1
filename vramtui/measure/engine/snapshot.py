"""`--snapshot`: the caching allocator's history, and a snapshot at the run's peak or OOM.

CUDA only. Recording starts before the model is built, bounded to ENTRIES actions
(a ring: the newest are kept). A step whose peak passes the kept snapshot's by GAIN,
and the last step if it passes it at all, takes `torch.cuda.memory._snapshot()` and
keeps it in memory in place of the one before (taking one costs tens of milliseconds
a time; GAIN bounds how many a run takes). At the end — or at an out-of-memory, with
a snapshot taken there and then — the one kept is written as a pickle that PyTorch's
memory_viz opens, and what held the bytes at its moment (vramtui.measure.allocator_snapshot)
goes to the parent as an AllocationSnapshot event.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.allocator_snapshot import Moment, moment, snapshot_event

ENTRIES = 20_000  # allocator actions kept in the trace (several steps of a large model)
GAIN = 0.05  # a new snapshot when a step's peak is 5 % past the kept one's


class Snapshots:
    def __init__(
        self, path: Path, device: int, last_token: int, emit: Callable[[ev.Event], None]
    ) -> None:
        self.path = path
        self.device = device
        self.last_token = last_token
        self.emit = emit
        self.kept: tuple[Any, int | None, str, int | None] | None = None  # snap, token, phase, peak
        self.run_peak: int | None = None
        self.peak_at: tuple[int, str] | None = None  # the step that set run_peak
        self.taken = 0

    @classmethod
    def start(cls, spec: Any, device: Any, emit: Callable[[ev.Event], None]) -> Snapshots | None:
        """Recording on, when the spec asks for it and the device is CUDA; else None."""
        path = getattr(spec, "snapshot", None)
        if not path or device.type != "cuda":
            return None
        import torch

        torch.cuda.memory._record_memory_history(max_entries=ENTRIES, stacks="python")
        return cls(Path(path), device.index or 0, spec.tokens - 1, emit)

    def _take(self) -> Any:
        import torch

        self.taken += 1
        return torch.cuda.memory._snapshot()

    def step(self, token: int, phase: str, peak: int | None) -> None:
        """After each step's sample: keep a snapshot of a step that sets a new peak."""
        if peak is None:
            return
        kept_peak = self.kept[3] if self.kept else None
        if self.run_peak is None or peak > self.run_peak:
            self.run_peak, self.peak_at = peak, (token, phase)
        if (
            kept_peak is None
            or peak > kept_peak * (1 + GAIN)
            or (token == self.last_token and peak > kept_peak)
        ):
            self.kept = (self._take(), token, phase, peak)

    def ended_by(self, exc: BaseException, token: int | None, phase: str) -> None:
        """The run failed: at an out-of-memory the snapshot of now, else the one kept.
        Never raises: the failure that ended the run is the one to report."""
        import torch

        try:
            if isinstance(exc, torch.OutOfMemoryError):
                self.write(self._take(), "oom", token, phase, None)
            else:
                self.finish()
        except Exception as err:  # noqa: BLE001 - into the engine's log, not over the failure
            print(f"vramtui: no allocation snapshot: {type(err).__name__}: {err}", file=sys.stderr)

    def finish(self) -> None:
        """Write the snapshot of the run's peak. A step that passed the kept one's peak by
        less than GAIN (a compiled step's pool, say) took no snapshot of its own: one taken
        now holds it when its trace still reaches back to that step."""
        if self.kept is None:
            return
        snap, token, phase, peak = self.kept
        if self.run_peak is not None and peak is not None and self.run_peak > peak:
            late = self._take()
            found = moment(late, self.device, "peak")
            if found.allocated_bytes > peak and self.peak_at:
                self.write(late, "peak", *self.peak_at, self.run_peak, found)
                return
        self.write(snap, "peak", token, phase, peak)

    def stop(self) -> None:
        """Recording off (the snapshot is taken: the rest of the run is not traced)."""
        import torch

        torch.cuda.memory._record_memory_history(enabled=None)

    def write(
        self,
        snap: Any,
        reason: str,
        token: int | None,
        phase: str,
        peak: int | None,
        found: Moment | None = None,
    ) -> None:
        """Save `snap` and send what held the bytes at its moment (`found`, if the
        caller has it already)."""
        self.stop()
        notes = [f"{self.taken} snapshot(s) taken in the run"]
        path = str(self.path)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump(snap, f)
            os.replace(tmp, self.path)
        except OSError as err:
            notes.append(f"the snapshot file could not be written: {err.strerror or err}")
            path = ""
        if found is None:
            found = moment(snap, self.device, reason)
        self.emit(snapshot_event(found, path, token, phase, (peak, self.run_peak), notes))
