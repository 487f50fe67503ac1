"""A spare engine: one engine process started ahead, its imports done, waiting for a spec.

Most of a run's start-up is importing torch and transformers (seconds), which
depends on nothing the user picks. A spare does that while the user is still on
the start screen (or while the previous cell of a sweep runs), and makes no CUDA
call: it holds no context and no device memory until it is handed a spec, and it
is the same program in the same state as a cold engine when the spec arrives, so
its figures are a cold engine's. A spare is used once. One that has died, or was
started with another environment than the run needs (`Launch`), is ended and the
run starts cold. The parent ends its spare with `close()`; if the parent dies
first, the spare sees its stdin close and exits by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vramtui.measure.engine.process import EngineProcess, Launch

EngineFactory = Callable[[Launch], EngineProcess]


class SparePool:
    """Holds at most one spare engine. Thread-safe: the app's UI thread prepares,
    a worker thread takes."""

    def __init__(self, make_engine: EngineFactory = EngineProcess) -> None:
        self.make_engine = make_engine
        self._spare: EngineProcess | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._queued: Launch | None = None

    @property
    def spare(self) -> EngineProcess | None:
        with self._lock:
            return self._spare

    def prepare(self, launch: Launch) -> EngineProcess | None:
        """Have a live spare for `launch`: keep the one there if it fits, else start one.
        None once the pool is closed."""
        with self._lock:
            if self._closed:
                return None
            spare = self._spare
            if spare is not None and spare.alive and spare.launch == launch:
                return spare
            self._spare = None
        if spare is not None:
            spare.close()
        fresh = self.make_engine(launch)
        fresh.spawn()
        with self._lock:
            if not self._closed and self._spare is None:
                self._spare = fresh
                return fresh
        fresh.close()  # closed (or prepared by another thread) meanwhile
        return self.spare

    def take(self, launch: Launch) -> EngineProcess | None:
        """The spare, for one run of `launch`, or None (no spare, dead, or stale)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return None
        if spare.alive and spare.launch == launch:
            return spare
        spare.close()
        return None

    def queue(self, launch: Launch | None) -> None:
        """Start a spare for `launch` once the next run's engine has its spec (a sweep's
        next cell, while this one runs); None queues nothing."""
        with self._lock:
            self._queued = launch

    def handed_over(self) -> None:
        """Called once a run's engine has its spec: start the queued spare, if any."""
        with self._lock:
            launch, self._queued = self._queued, None
        if launch is not None:
            self.prepare(launch)

    def close(self) -> None:
        """End the spare and start no other. Safe to call twice."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
