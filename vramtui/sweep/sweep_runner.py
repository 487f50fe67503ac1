"""Running a sweep: one cell after another, each in a fresh engine process.

Start-up overlaps with work: while cell k runs, the engines of the next cells
(up to `ahead` of them) are started (spares: imports only, no CUDA call); each
is handed its spec only once the previous cell's engine process has ended, so
there are never two CUDA contexts at once. Two ahead hide an engine's imports
behind a short cell too (a 20-token cell ends long before the next engine has
imported torch and transformers); one ahead hides them only behind long cells.

With `fork`, a sweep forks its engines from a fork server (engine/forkserver.py)
that imports torch and transformers once: no engine imports beside a running cell.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.engine.engine_process import EngineProcess, Launch
from vramtui.measure.engine.forkserver import ForkServer
from vramtui.measure.engine.spare import SparePool
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session
from vramtui.runspec import ResolvedRun
from vramtui.sweep.grid import Cell
from vramtui.sweep.results import CellResult

# The engines a sweep keeps started ahead, where the machine has the cores for them.
AHEAD = 2


@dataclass(frozen=True)
class Ahead:
    """How a sweep starts engines ahead: up to `engines` of them; `beside_cells`: while
    a cell runs (the next one each time a cell starts), else only in waves, together
    with a cold engine while no cell runs (the pool empty, the next `engines` at once)."""

    engines: int
    beside_cells: bool = True


def plan_ahead(
    cells: Sequence[Cell], engines: int | None = None, cores: int | None = None
) -> Ahead:
    """`engines` ahead (by default AHEAD, fewer where this machine's `cores` are short:
    an importing engine takes a core). A CPU cell's torch threads use every core, so
    an engine importing beside it would slow it (on two cores it took 2-3 times as
    long): there the engines ahead import in waves, while no cell runs."""
    cores = cores or os.cpu_count() or 1
    if engines is None:
        engines = max(0, min(AHEAD, cores - 1))
    on_cpu = any(cell.run.backend == "cpu" for cell in cells)
    return Ahead(engines, beside_cells=not on_cpu)


RecorderFactory = Callable[[ResolvedRun, "dict[str, str] | None"], Recorder]
CellEnv = Callable[[Cell], "dict[str, str] | None"]


class Sweep:
    """Run cells one at a time, each in its own engine process.

    A cell that fails (out of memory, crash, error) is recorded and the sweep
    goes on. Two failures end it early: `cancel()` (the running cell ends
    'cancelled'), and a usage failure before the engine has named its device
    (a device that is not there fails every cell alike; `aborted` says why).
    A usage failure after that (a config transformers cannot build) skips the
    rest of that model's cells.

    `cell_env` adds environment variables to one cell's engine (the engine's
    test hooks); it is for tests, not a user-facing option.

    Engines of the next cells are started ahead (`ahead` of them, by default as
    `plan_ahead` finds this machine's cores allow; 0 starts none), as spares of the
    recorders' pool (`recorder.spares`); a recorder without one (a stand-in) has
    nothing started ahead; an `Ahead` is taken as it is. `cores`: the processors this
    sweep may count on (a lane's share).
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        *,
        make_recorder: RecorderFactory | None = None,
        cell_env: CellEnv | None = None,
        ahead: int | Ahead | None = None,
        cores: int | None = None,
        on_cell_start: Callable[[Cell, Session], None] | None = None,
        on_cell_done: Callable[[CellResult], None] | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
        fork: bool = False,
    ) -> None:
        self.cells = list(cells)
        self.ahead = ahead if isinstance(ahead, Ahead) else plan_ahead(self.cells, ahead, cores)
        self.spares = SparePool(self.make_engine) if self.ahead.engines else None
        # Engines forked from one server (imports once), where asked (bench --fork). Not
        # by default: on the H200 one forked cell of ten reserved 2 MiB less than every
        # spawned engine of the same cell (benchmarks/results/fast_start/fork-divergence/).
        self.fork = fork
        self.server: ForkServer | None = None
        self.make_recorder = make_recorder or self._recorder
        self.cell_env = cell_env
        self.on_cell_start = on_cell_start
        self.on_cell_done = on_cell_done
        self.on_event = on_event
        self.results: list[CellResult] = []
        self.aborted: str | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._current: Recorder | None = None
        self._pools: list[SparePool] = []  # where engines were started ahead: ended at the end

    def _recorder(self, run: ResolvedRun, extra_env: dict[str, str] | None) -> Recorder:
        return Recorder.for_run(
            run, extra_env=extra_env, spares=self.spares, make_engine=self.make_engine
        )

    def make_engine(self, launch: Launch) -> EngineProcess:
        """Forked from the sweep's server where it runs with this launch, else spawned."""
        server = self.server
        return server.make_engine(launch) if server is not None else EngineProcess(launch)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """End the running cell (its session records `reason`) and start no other.
        Any thread."""
        self._cancelled.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel(reason)

    def run(self) -> list[CellResult]:
        if self.fork and self.cells:
            first = self.cells[0]
            self.server = ForkServer(Launch.for_spec(first.spec, self._env(first)))
        try:
            return self._run_cells()
        finally:
            for pool in self._pools:
                pool.close()  # an engine started ahead for a cell a cancel or abort left out
            if self.server is not None:
                self.server.close()

    def _run_cells(self) -> list[CellResult]:
        dead_models: dict[tuple[str, str, str | None], str] = {}
        for n, cell in enumerate(self.cells):
            if self._cancelled.is_set() or self.aborted:
                break
            reason = dead_models.get(cell.model_key)
            following = self.cells[n + 1 : n + 1 + self.ahead.engines]
            result = CellResult.skipped(cell, reason) if reason else self._run_cell(cell, following)
            if result is None:  # the recorder refused the spec: the whole sweep is wrong
                break
            self.results.append(result)
            if self.on_cell_done is not None:
                self.on_cell_done(result)
            if result.failure_kind == "usage":
                if result.environment.device_name is None:
                    self.aborted = result.failure_message or "usage error"
                else:
                    why = f"{cell.spec.model} failed: {result.failure_message}"
                    dead_models[cell.model_key] = why
        return self.results

    def _env(self, cell: Cell) -> dict[str, str] | None:
        return self.cell_env(cell) if self.cell_env else None

    def _start_ahead(self, recorder: Recorder, cells: Sequence[Cell]) -> None:
        """Have the engines of `cells` started (imports only) as soon as `recorder`'s
        engine has its spec, in the pool `recorder` draws from."""
        spares = getattr(recorder, "spares", None)
        if spares is None:
            return
        if spares not in self._pools:
            self._pools.append(spares)
        if not self.ahead.beside_cells and spares.spares:
            cells = []  # a wave is still waiting: the next one starts with a cold engine
        spares.queue([Launch.for_spec(cell.spec, self._env(cell)) for cell in cells])

    def _run_cell(self, cell: Cell, following: Sequence[Cell]) -> CellResult | None:
        env = self._env(cell)
        try:
            recorder = self.make_recorder(cell.run, env)
        except UsageError as exc:
            self.aborted = str(exc)
            return None
        with self._lock:
            self._current = recorder
        if self._cancelled.is_set():
            recorder.cancel()
        session = recorder.session
        self._start_ahead(recorder, following)
        if self.on_cell_start is not None:
            self.on_cell_start(cell, session)
        try:
            session = recorder.run(self.on_event)
        except Exception as exc:  # noqa: BLE001 - one cell's failure never ends the sweep
            phase = session.snapshot().current_phase
            session.fail(ev.Failed("error", f"{type(exc).__name__}: {exc}", phase))
            engine = getattr(recorder, "engine", None)
            if engine is not None:
                engine.close()
        finally:
            with self._lock:
                self._current = None
        view = session.snapshot()
        if not view.finished:  # Recorder always ends it; anything else is a crash
            token = view.tokens_done - 1 if view.tokens_done else None
            why = "the run ended without a result"
            session.fail(ev.Failed("crashed", why, view.current_phase, token))
        return CellResult.from_session(cell, session.snapshot())


def run_sweep(
    cells: Sequence[Cell],
    on_cell_done: Callable[[CellResult], None] | None = None,
    make_recorder: RecorderFactory | None = None,
    **options: Any,
) -> list[CellResult]:
    """Run every cell (see `Sweep`); `on_cell_done` sees each result as it finishes."""
    return Sweep(cells, make_recorder=make_recorder, on_cell_done=on_cell_done, **options).run()
