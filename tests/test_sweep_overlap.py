"""A sweep overlaps start-up with work: the next cells' engines are started while cell k
runs (or, on a CPU sweep, in waves while no cell runs), and each is handed its spec only
once the previous cell's engine has ended (never two CUDA contexts).

The scheduling is tested with stand-in engine processes that keep a timeline and
count the contexts a real engine would hold (from hand-over to exit); one test runs
real tiny engines on the CPU."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest
from helpers import TINY_CONFIG

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_process import Launch
from vramtui.measure.engine.spare import SparePool
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session, SessionView
from vramtui.measure.startup import COLD, FORKED, FORKED_SPARE, WARM
from vramtui.runspec import ResolvedRun, RunSpec
from vramtui.sweep import grid
from vramtui.sweep.sweep_runner import AHEAD, Ahead, Sweep, plan_ahead


@dataclass
class Device:
    """The timeline of every stand-in engine, and the contexts held at each moment."""

    timeline: list[tuple[str, int]] = field(default_factory=list)
    contexts: int = 0
    most_contexts: int = 0
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class StandInEngine:
    """EngineProcess's interface, no process: plays a short run once handed a spec."""

    def __init__(self, device: Device, launch: Launch) -> None:
        self.device, self.launch = device, launch
        self.number = next(device.numbers)
        self.pid: int | None = None  # no process to watch
        self.alive = False
        self.spec: RunSpec | None = None

    def note(self, what: str) -> None:
        self.device.timeline.append((what, self.number))

    def spawn(self) -> None:
        self.alive = True
        self.note("spawn")

    def hand(self, spec: RunSpec) -> None:
        self.spec = spec
        self.device.contexts += 1  # a real engine creates its context once it has a spec
        self.device.most_contexts = max(self.device.most_contexts, self.device.contexts)
        self.note("hand")

    def start(self, spec: RunSpec) -> None:
        self.spawn()
        self.hand(spec)

    def events(self) -> Iterator[ev.Event]:
        assert self.spec is not None
        yield ev.Hello(self.number, "cuda:0", "cuda", "Stand-in", None, None, "torch.cuda")
        yield ev.Phase("prefill", 1.0)
        for token in range(self.spec.tokens):
            yield ev.Sample(token, 1.0 + token, "decode", 100, 200, 150, 10 * token)
        yield ev.Done(self.spec.tokens, 0.1, 0.1, 0.1, 0.2, 10.0, 10.0, 150)

    def wait(self) -> int:
        if self.alive:
            self.alive = False
            self.device.contexts -= 1
            self.note("exit")
        return 0

    def terminate(self, grace_s: float = 1.5) -> None:
        self.wait()

    def close(self) -> None:
        if self.alive and self.spec is None:  # a spare ended unused
            self.alive = False
            self.note("end unused")
        self.wait()

    def stderr_tail(self, lines: int = 20) -> str:
        return ""


def cells(n: int) -> list[grid.Cell]:
    axes = grid.Axes(
        models=[grid.ModelRef("tiny-opt", "config", str(TINY_CONFIG))],
        tokens=list(range(2, 2 + n)),
        base=RunSpec(device="cpu"),
    )
    return axes.cells()


def stand_in_sweep(n: int, ahead: Ahead) -> tuple[Device, list[SessionView]]:
    device = Device()
    pool = SparePool(make_engine=lambda launch: StandInEngine(device, launch))  # type: ignore[arg-type,return-value]

    def make_recorder(run: ResolvedRun, env: dict[str, str] | None) -> Recorder:
        return Recorder.for_run(
            run,
            extra_env=env,
            use_nvml=False,
            spares=pool if ahead.engines else None,
            make_engine=pool.make_engine,
        )

    sessions: list[Session] = []
    sweep = Sweep(
        cells(n),
        make_recorder=make_recorder,
        ahead=ahead,
        on_cell_start=lambda c, s: sessions.append(s),
    )
    results = sweep.run()
    pool.close()
    assert [r.status for r in results] == ["completed"] * n
    return device, [s.snapshot() for s in sessions]  # each finished


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("engines", [1, 2])
def test_the_next_engines_start_during_a_cell_and_get_their_spec_after_it(
    n: int, engines: int
) -> None:
    device, sessions = stand_in_sweep(n, Ahead(engines))
    assert device.most_contexts == 1
    order = device.timeline
    for k in range(1, n):  # engine k+1 serves cell k+1
        assert order.index(("exit", k)) < order.index(("hand", k + 1))
        for ahead in range(1, engines + 1):  # started before cell k ended, up to `engines` on
            if k + ahead <= n:
                assert order.index(("spawn", k + ahead)) < order.index(("exit", k))
        if k + engines + 1 <= n:  # but no further: started once cell k+1 has its engine
            assert order.index(("hand", k + 1)) < order.index(("spawn", k + engines + 1))
    assert [s.environment.engine_start for s in sessions] == [COLD] + [WARM] * (n - 1)
    assert ("end unused", n + 1) not in order and len({e for _, e in order}) == n


def test_in_waves_engines_start_only_with_a_cold_one_never_beside_a_running_cell() -> None:
    device, sessions = stand_in_sweep(5, Ahead(1, beside_cells=False))
    assert device.timeline == [
        *[("spawn", 1), ("hand", 1), ("spawn", 2), ("exit", 1), ("hand", 2), ("exit", 2)],
        *[("spawn", 3), ("hand", 3), ("spawn", 4), ("exit", 3), ("hand", 4), ("exit", 4)],
        *[("spawn", 5), ("hand", 5), ("exit", 5)],
    ]
    assert [s.environment.engine_start for s in sessions] == [COLD, WARM, COLD, WARM, COLD]


def test_without_overlap_each_engine_starts_after_the_last_has_ended() -> None:
    device, sessions = stand_in_sweep(3, Ahead(0))
    assert device.timeline == [(what, k) for k in (1, 2, 3) for what in ("spawn", "hand", "exit")]
    assert [s.environment.engine_start for s in sessions] == [COLD] * 3


def test_engines_ahead_follow_the_cores_and_the_device() -> None:
    cpu_cells = cells(3)
    gpu_cells = [replace(c, run=replace(c.run, device="cuda:0", backend="cuda")) for c in cpu_cells]
    assert plan_ahead(gpu_cells, cores=16) == Ahead(AHEAD, beside_cells=True)
    assert plan_ahead(gpu_cells, cores=2) == Ahead(1, beside_cells=True)  # a core for the cell
    assert plan_ahead(gpu_cells, cores=1) == Ahead(0, beside_cells=True)
    assert plan_ahead(cpu_cells, cores=2) == Ahead(1, beside_cells=False)  # the cell takes both
    assert plan_ahead(cpu_cells, 3, cores=2) == Ahead(3, beside_cells=False)  # asked for
    assert plan_ahead(gpu_cells, 0, cores=16).engines == 0


def test_a_cancelled_sweep_ends_the_engine_started_ahead() -> None:
    device = Device()
    pool = SparePool(make_engine=lambda launch: StandInEngine(device, launch))  # type: ignore[arg-type,return-value]
    sweep: Sweep

    def make_recorder(run: ResolvedRun, env: dict[str, str] | None) -> Recorder:
        return Recorder.for_run(run, use_nvml=False, spares=pool, make_engine=pool.make_engine)

    def cancel_after_first(result: object) -> None:
        sweep.cancel()

    sweep = Sweep(cells(3), make_recorder=make_recorder, on_cell_done=cancel_after_first)
    assert len(sweep.run()) == 1
    assert device.timeline[-1] == ("end unused", 2) and device.contexts == 0


@pytest.mark.engine
def test_real_engines_overlap_and_measure_what_cold_ones_do() -> None:
    # engines started ahead: none, two spawned, two forked from a fork server
    runs: dict[tuple[int, bool], list[Session]] = {(0, False): [], (2, False): [], (2, True): []}
    for (ahead, fork), sessions in runs.items():
        keep = sessions.append
        plan = Ahead(ahead)  # beside the running cells, as on a GPU host
        sweep = Sweep(cells(3), ahead=plan, fork=fork, on_cell_start=lambda c, s, k=keep: k(s))
        sweep.run()
    views = {key: [s.snapshot() for s in sessions] for key, sessions in runs.items()}
    warm, forked = views[(2, False)], views[(2, True)]
    assert [s.environment.engine_start for s in forked] == [FORKED, FORKED_SPARE, FORKED_SPARE]
    assert len({s.hello.pid for s in forked if s.hello}) == 3
    assert [s.environment.engine_start for s in warm] == [COLD, WARM, WARM]
    for before, after in itertools.pairwise(warm):
        assert after.startup is not None and after.startup.spawned is not None
        assert after.startup.spawned < before.ended_at  # type: ignore[operator]
    assert warm[2].startup.spawned < warm[0].ended_at  # type: ignore[operator,union-attr]
    assert len({s.hello.pid for s in warm if s.hello}) == 3

    def deterministic(s: SessionView) -> tuple[object, ...]:
        return (s.status, s.loaded.params, [(t.token, t.kv_bytes) for t in s.token_samples])  # type: ignore[union-attr]

    cold = [deterministic(s) for s in views[(0, False)]]
    assert [deterministic(s) for s in warm] == [deterministic(s) for s in forked] == cold
