"""The fork server (measure/engine/forkserver.py, zygote.py): real processes on the
CPU with the tiny model. Forked engines run, fail and end as spawned ones do; the
imports are done once, by the server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import record, resolved, tiny_spec

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_process import EngineProcess, Launch
from vramtui.measure.engine.forkserver import ForkedEngine, ForkServer, _exists
from vramtui.measure.environment import Environment
from vramtui.measure.recorder import Recorder
from vramtui.measure.startup import COLD, FORKED, FORKED_SPARE
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report import bench_table as bench_report
from vramtui.sweep import grid
from vramtui.sweep.results import CellResult
from vramtui.sweep.sweep_runner import Ahead, Sweep

SPEC = tiny_spec()


@contextmanager
def running_server(env: dict[str, str] | None = None) -> Iterator[ForkServer]:
    """A server for the test's environment, made in the test's body (a run's Launch
    must equal the server's, and pytest's PYTEST_CURRENT_TEST differs in fixtures)."""
    server = ForkServer(Launch.for_spec(SPEC, env))
    try:
        yield server
    finally:
        server.close()


@pytest.mark.engine
def test_forked_engines_run_as_spawned_ones_and_import_once() -> None:
    spawned = record(SPEC)
    with running_server() as server:
        forked = [
            Recorder.for_run(resolved(SPEC), make_engine=server.make_engine).run().snapshot()
            for _ in (1, 2)
        ]
    pids = {s.environment.engine_pid for s in forked}
    assert len(pids) == 2 and server.proc.pid not in pids  # two fresh processes
    for session in forked:
        assert session.status == "completed" and session.environment.engine_start == FORKED
        assert session.hello is not None and session.hello.pid == session.environment.engine_pid
        summary, cold = summary_of(session), summary_of(spawned)
        for key in ("tokens_generated", "weights_bytes", "kv_cache_bytes_final", "params"):
            assert summary[key] == cold[key]
    # the imports were the server's, once: the same import span in every forked run
    spans = {summary_of(s)["timings"]["startup"]["imports_s"] for s in forked}
    assert len(spans) == 1
    assert spawned.environment.engine_start == COLD


@pytest.mark.engine
def test_a_forked_engine_is_cancelled_and_its_exit_reported() -> None:
    slow = {"VRAMTUI_TEST_STEP_SLEEP": "0.2"}  # steps slow enough to cancel mid-run
    with running_server(slow) as server:
        run = resolved(tiny_spec(tokens=110))
        recorder = Recorder.for_run(run, extra_env=slow, make_engine=server.make_engine)

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.Sample) and event.token == 2:
                recorder.cancel("stopped by the test")

        session = recorder.run(on_event).snapshot()
    assert session.status == "cancelled" and session.failure is not None
    assert session.failure.message == "stopped by the test"
    assert 3 <= session.tokens_done < 110  # what was measured is kept
    engine = recorder.child
    assert isinstance(engine, ForkedEngine) and not engine.alive


@pytest.mark.engine
def test_a_forked_engine_killed_mid_run_is_a_crash_with_its_data_kept() -> None:
    crash = {"VRAMTUI_TEST_CRASH_AT_TOKEN": "3"}  # SIGKILL inside step 3
    with running_server(crash) as server:
        recorder = Recorder.for_run(resolved(SPEC), extra_env=crash, make_engine=server.make_engine)
        session = recorder.run().snapshot()
    assert session.status == "failed" and session.failure is not None
    assert session.failure.kind == "crashed"
    assert session.failure.message.startswith("engine exited with code -9")  # SIGKILL, as spawned
    assert [s.token for s in session.token_samples] == [0, 1, 2]  # measured and kept


@pytest.mark.engine
def test_once_the_server_has_ended_engines_are_spawned() -> None:
    with running_server() as server:
        stale = ForkedEngine(server, server.launch)  # made while the server ran
    assert server.proc.returncode == 0  # its stdin closed: it exits by itself
    assert type(server.make_engine(server.launch)) is EngineProcess
    recorder = Recorder.for_run(resolved(SPEC), make_engine=lambda launch: stale)
    session = recorder.run().snapshot()
    assert session.status == "completed" and session.environment.engine_start == COLD


@pytest.mark.engine
def test_a_launch_other_than_the_servers_is_spawned() -> None:
    other = Launch.for_spec(SPEC, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"})
    with running_server() as server:
        assert type(server.make_engine(other)) is EngineProcess
        assert type(server.make_engine(server.launch)) is ForkedEngine


@pytest.mark.engine
def test_a_sweep_forks_its_engines_only_when_asked() -> None:
    axes = grid.Axes(models=[grid.ModelRef("tiny-opt", "config", SPEC.path or "")],
                     tokens=[3, 4, 5], base=SPEC)  # fmt: skip
    cells = axes.cells()
    sweep = Sweep(cells, ahead=Ahead(1), fork=True)
    results = sweep.run()
    assert [r.status for r in results] == ["completed"] * 3
    kinds = [r.environment.engine_start for r in results]
    assert kinds == [FORKED, FORKED_SPARE, FORKED_SPARE]  # the next one forked ahead
    assert sweep.server is not None and sweep.server.proc.returncode == 0  # ended with it
    # only where asked (bench --fork): spawned engines by default, on the CPU and GPUs
    assert Sweep(cells).fork is False
    assert Sweep(cells, ahead=Ahead(2, beside_cells=True)).fork is False


@pytest.mark.engine
def test_an_engine_whose_server_died_still_ends_and_is_waited_for() -> None:
    slow = {"VRAMTUI_TEST_STEP_SLEEP": "0.05"}
    with running_server(slow) as server:
        recorder = Recorder.for_run(
            resolved(tiny_spec(tokens=20)), extra_env=slow, make_engine=server.make_engine
        )

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.Sample) and event.token == 1:
                server.proc.kill()  # the server dies under a running engine

        session = recorder.run(on_event).snapshot()
    # the engine carried on without its server, its run completed, and it was waited
    # for until its process was gone (its exit status lost with the server)
    assert session.status == "completed" and session.tokens_done == 20
    assert not server.alive
    engine = recorder.child
    assert isinstance(engine, EngineProcess) and engine.proc is not None
    assert engine.proc.returncode == -9
    assert not _exists(engine.proc.pid)


@pytest.mark.engine
def test_a_forked_engine_that_fails_before_its_run_leaves_its_traceback() -> None:
    with running_server() as server:
        engine = server.make_engine(server.launch)
        assert isinstance(engine, ForkedEngine)
        try:
            engine.spawn()
            assert engine.start_kind == FORKED  # not a spawned engine standing in
            assert engine.proc is not None and engine.proc.stdin is not None
            engine.proc.stdin.write(b"not a spec\n")  # the engine cannot read it
            engine.proc.stdin.flush()
            assert engine.proc.wait(timeout=120) == 1
            assert "JSONDecodeError" in engine.stderr_tail()
        finally:
            engine.close()


def test_a_table_of_forked_cells_says_how_their_figures_can_differ() -> None:
    cell = grid.Axes.of_catalogue(["opt-125m"], tokens=[10]).cells()[0]

    def notes(engine_start: str, source: str = "torch.cuda") -> list[str]:
        env = Environment(memory_source=source, engine_start=engine_start)
        return bench_report.method_notes([CellResult(cell, "completed", environment=env)], False)

    assert bench_report.FORKED_NOTE_CUDA in notes(FORKED_SPARE)
    assert bench_report.FORKED_NOTE_CUDA in notes(FORKED)
    assert bench_report.FORKED_NOTE_CPU in notes(FORKED, "process RSS (psutil)")
    assert not any(n.startswith("Forked") for n in notes(COLD) + notes(COLD, "process RSS"))
