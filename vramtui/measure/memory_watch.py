"""The engine's resident memory seen from the parent, and the host's memory limit.

The kernel's out-of-memory killer ends a process with SIGKILL and says nothing
to it; the parent can only tell afterwards from how much memory the process
held. `RssWatch` samples that a few times a second (a psutil call, ~20 µs).
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def memory_limit() -> int:
    """The memory a process here may use: the system's RAM, or a smaller cgroup limit."""
    total = int(psutil.virtual_memory().total)
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


class RssWatch:
    """A thread that keeps the largest RSS of one process until stopped."""

    def __init__(self, pid: int, hz: float = 10.0) -> None:
        self.pid = pid
        self.interval = 1.0 / hz
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            process = psutil.Process(self.pid)
            while not self._stop.is_set():
                rss = int(process.memory_info().rss)
                self.peak = rss if self.peak is None else max(self.peak, rss)
                self._stop.wait(self.interval)
        except (psutil.Error, OSError):
            return  # the process has ended

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
