"""Spare engines: engine processes started ahead, their imports done, waiting for a spec.

Most of a run's start-up is importing torch and transformers (seconds), which
depends on nothing the user picks; so does what a run imports lazily, which an
engine learns from a tiny run in a throwaway fork (rehearsal.py). A spare does that
while the user is still on the start screen (or while the previous cell of a sweep
runs), and makes no CUDA call: it holds no context and no device memory until it is
handed a spec, and it is the same program in the same state as a cold engine when
the spec arrives, so its figures are a cold engine's. A spare is used once. One that
has died, or was started with another environment than the run needs (`Launch`), is
ended and the run starts cold. The parent ends its spares with `close()`; if the
parent dies first, each spare sees its stdin close and exits by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from vramtui.measure.engine.engine_process import EngineGone, EngineProcess, Launch
from vramtui.measure.startup import COLD, FORKED, FORKED_SPARE, WARM
from vramtui.runspec.train_spec import EngineSpec

EngineFactory = Callable[[Launch], EngineProcess]


class SparePool:
    """The spares, oldest first. Thread-safe: the app's UI thread prepares, a worker
    thread takes."""

    def __init__(self, make_engine: EngineFactory = EngineProcess) -> None:
        self.make_engine = make_engine
        self._spares: list[EngineProcess] = []
        self._queued: list[Launch] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def spares(self) -> list[EngineProcess]:
        with self._lock:
            return list(self._spares)

    def prepare(self, *launches: Launch) -> EngineProcess | None:
        """Have one live spare for each of `launches`: keep those that fit, end the rest
        (dead or stale), start what is missing. The oldest spare; None once closed."""
        wanted = list(launches)
        with self._lock:
            if self._closed:
                return None
            keep: list[EngineProcess] = []
            drop: list[EngineProcess] = []
            for spare in self._spares:
                fits = spare.alive and spare.launch in wanted
                (keep if fits else drop).append(spare)
                if fits:
                    wanted.remove(spare.launch)
            for launch in wanted:  # Popen only: the imports go on in the spare
                spare = self.make_engine(launch)
                spare.spawn()
                keep.append(spare)
            self._spares = keep
        for spare in drop:
            spare.close()
        return keep[0] if keep else None

    def take(self, launch: Launch) -> EngineProcess | None:
        """The oldest live spare for `launch`, for one run; None if there is none. Spares
        that have died or that do not fit `launch` (stale) are ended on the way."""
        with self._lock:
            fit = [s for s in self._spares if s.alive and s.launch == launch]
            drop = [s for s in self._spares if s not in fit]
            self._spares = fit[1:]
        for spare in drop:
            spare.close()
        return fit[0] if fit else None

    def queue(self, launches: Sequence[Launch]) -> None:
        """The spares to have once the next run's engine has its spec (a sweep's next
        cells, started while this one runs); an empty list queues nothing."""
        with self._lock:
            self._queued = list(launches)

    def handed_over(self) -> None:
        """Called once a run's engine has its spec: prepare the queued spares, if any."""
        with self._lock:
            launches, self._queued = self._queued, []
        if launches:
            self.prepare(*launches)

    def close(self) -> None:
        """End every spare and start no other. Safe to call twice."""
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.close()


def start_engine(
    spec: EngineSpec,
    launch: Launch,
    spares: SparePool | None = None,
    make_engine: EngineFactory = EngineProcess,
) -> tuple[EngineProcess, str]:
    """An engine running `spec`: a spare's where one fits, else a cold one; and which
    (startup's COLD, WARM, FORKED or FORKED_SPARE)."""
    spare = spares.take(launch) if spares is not None else None
    forked = getattr(spare, "start_kind", COLD) == FORKED  # (a test's stand-in has none)
    engine, how = spare, FORKED_SPARE if forked else WARM
    if spare is not None:
        try:
            spare.hand(spec)
        except EngineGone:  # died between the check and the hand-over
            spare.close()
            engine = None
    if engine is None:
        engine = make_engine(launch)
        engine.start(spec)
        how = getattr(engine, "start_kind", COLD)  # or forked, from a fork server
    if spares is not None:
        spares.handed_over()
    return engine, how
