"""Test hooks: faults the engine raises on purpose, for the fault tests.

Read once from the environment; the engine consults them only when one is set.
  VRAMTUI_TEST_OOM_AT_TOKEN=k    raise torch.OutOfMemoryError inside step k (a training
                                 run's optimizer step k, as its backward starts)
  VRAMTUI_TEST_CRASH_AT_TOKEN=k  kill the engine with SIGKILL inside step k
  VRAMTUI_TEST_STEP_SLEEP=s      sleep s seconds in every step (slow runs)
  VRAMTUI_TEST_CRASH_RANK=r      under --tp: only rank r crashes (RANK, torchrun's)
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

PREFIX = "VRAMTUI_TEST_"


def _int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


@dataclass(frozen=True)
class Faults:
    oom_at: int | None = None
    crash_at: int | None = None
    step_sleep: float = 0.0
    crash_rank: int | None = None

    def at_step(self, token: int) -> None:
        """Called inside each step: sleep, raise or die where a test asked."""
        if self.step_sleep:
            time.sleep(self.step_sleep)
        if token == self.oom_at:
            import torch

            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (raised by the "
                "VRAMTUI_TEST_OOM_AT_TOKEN test hook)"
            )
        if token == self.crash_at and self.crash_rank in (None, _int("RANK")):
            os.kill(os.getpid(), signal.SIGKILL)


def from_environment() -> Faults | None:
    """The faults a test set, or None (the usual case: nothing to consult)."""
    if not any(name.startswith(PREFIX) for name in os.environ):
        return None
    return Faults(
        oom_at=_int(PREFIX + "OOM_AT_TOKEN"),
        crash_at=_int(PREFIX + "CRASH_AT_TOKEN"),
        step_sleep=float(os.environ.get(PREFIX + "STEP_SLEEP") or 0),
        crash_rank=_int(PREFIX + "CRASH_RANK"),
    )
