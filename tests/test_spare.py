"""Spare engines with real processes on the CPU: handed a spec, a spare gives a cold
engine's figures; it is used once; a dead or stale one falls back to a cold start; it
dies with the app and with a killed parent; start-up timings reach the JSON and the
summary."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import psutil
import pytest
from helpers import CPU_ONLY, resolved, tiny_spec

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_process import EngineGone, EngineProcess, Launch
from vramtui.measure.engine.spare import SparePool
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import SessionView
from vramtui.measure.startup import COLD, WARM
from vramtui.measure.summary_format import typed_summary as summary_of
from vramtui.measure.summary_record import StartupTimes
from vramtui.report.export import json_text
from vramtui.report.summary_text import fact_rows, startup_line, summary_text
from vramtui.runspec import RunSpec

READY_S = 180  # an upper bound for a spare's imports on a busy machine, never a wait


def ready_pool(spec: RunSpec) -> tuple[SparePool, EngineProcess]:
    pool = SparePool()
    spare = pool.prepare(Launch.for_spec(spec))
    assert spare is not None and spare.wait_ready(READY_S), spare and spare.stderr_tail()
    return pool, spare


def figures(view: SessionView) -> dict[str, object]:
    """What a run measures that does not depend on the process's RSS (the CPU's memory
    figure, which differs by some pages from one process to the next, cold or not)."""
    assert view.loaded is not None and view.done is not None
    loaded = {k: v for k, v in vars(view.loaded).items() if k != "load_s"}
    return {
        "status": view.status,
        "loaded": loaded,
        "phases": [p.name for p in view.phases],
        "tokens": [(s.token, s.phase, s.kv_bytes) for s in view.token_samples],
        "max_allocated_known": view.done.max_allocated is not None,
        "memory_source": view.hello.memory_source if view.hello else None,
    }


@pytest.fixture(scope="module")
def spare_and_cold() -> tuple[SessionView, SessionView, int]:
    spec = tiny_spec(tokens=6)
    pool, spare = ready_pool(spec)
    warm = Recorder.for_run(resolved(spec), spares=pool).run().snapshot()
    assert pool.spares == []  # used once: nothing is left in the pool
    pool.close()
    cold = Recorder.for_run(resolved(spec)).run().snapshot()
    return warm, cold, spare.pid or -1


@pytest.mark.engine
def test_a_spare_handed_a_spec_gives_a_cold_engines_figures(
    spare_and_cold: tuple[SessionView, SessionView, int],
) -> None:
    warm, cold, spare_pid = spare_and_cold
    assert warm.environment.engine_start == WARM and cold.environment.engine_start == COLD
    assert warm.hello is not None and warm.hello.pid == spare_pid
    assert figures(warm) == figures(cold)


@pytest.mark.engine
def test_a_spare_did_its_imports_before_run_and_touched_no_cuda(
    spare_and_cold: tuple[SessionView, SessionView, int],
) -> None:
    warm, cold, _ = spare_and_cold
    assert warm.startup is not None and cold.startup is not None
    assert warm.startup.imported < warm.t0 < warm.startup.spec_received  # ready before Run
    assert cold.startup.spawned is not None and cold.startup.spawned >= cold.t0
    assert not warm.startup.cuda_initialized and not cold.startup.cuda_initialized


@pytest.mark.engine
def test_startup_timings_are_in_the_json_and_the_summary(
    spare_and_cold: tuple[SessionView, SessionView, int],
) -> None:
    warm, cold, _ = spare_and_cold
    for session, engine in ((warm, WARM), (cold, COLD)):
        startup = json.loads(json_text(session))["timings"]["startup"]
        assert startup["engine"] == engine
        stages = ("python_s", "imports_s", "device_init_s", "build_s", "first_step_s")
        assert all(startup[k] >= 0 for k in stages), startup
        assert 0 < startup["first_token_s"] < startup["first_decode_token_s"]
        first = session.token_samples[0].t - session.t0
        assert startup["first_token_s"] == round(first, 4)
        line = dict(fact_rows(summary_of(session)))["start-up"]
        assert line.startswith(f"first token {startup['first_token_s']:.2f} s after Run")
        assert f"({engine}:" in line and line in summary_text(summary_of(session))
    assert json.loads(json_text(warm))["timings"]["startup"]["imports_done_s"] < 0
    assert "imports done before Run" in dict(fact_rows(summary_of(warm)))["start-up"]
    assert "imports done before Run" not in dict(fact_rows(summary_of(cold)))["start-up"]


def test_a_spare_still_importing_at_run_is_not_said_to_have_finished() -> None:
    # as the H200 screenshot run had it: Run pressed 0.56 s after the spare started
    timings = StartupTimes(engine=WARM, imports_done_s=13.6105, imports_s=14.0338,
                           device_init_s=0.3846, build_s=0.239, first_step_s=0.3609,
                           first_token_s=14.5963)  # fmt: skip
    line = startup_line(timings)
    assert line is not None and "imports done before Run" not in line
    assert "first token 14.60 s after Run (warm spare: still importing at Run, done 13.61 s" in line
    assert "imports done before Run" in (startup_line(replace(timings, imports_done_s=-2.0)) or "")


@pytest.mark.engine
def test_a_dead_spare_falls_back_to_a_cold_start() -> None:
    spec = tiny_spec(tokens=2)
    pool = SparePool()
    spare = pool.prepare(Launch.for_spec(spec))
    assert spare is not None and spare.proc is not None
    spare.proc.kill()
    spare.proc.wait(timeout=30)
    session = Recorder.for_run(resolved(spec), spares=pool).run().snapshot()
    assert session.status == "completed" and session.environment.engine_start == COLD
    assert session.hello is not None and session.hello.pid != spare.pid


@pytest.mark.engine
def test_a_spare_that_dies_while_handed_over_falls_back_to_a_cold_start() -> None:
    class DiesAtHandOver(EngineProcess):
        def hand(self, spec: RunSpec) -> None:
            self.close()
            raise EngineGone("ended")

    spec = tiny_spec(tokens=2)
    pool = SparePool(make_engine=DiesAtHandOver)  # alive when taken, gone when handed over
    spare = pool.prepare(Launch.for_spec(spec))
    assert isinstance(spare, DiesAtHandOver)
    session = Recorder.for_run(resolved(spec), spares=pool).run().snapshot()
    assert session.status == "completed" and session.environment.engine_start == COLD
    assert spare.pid is not None and not psutil.pid_exists(spare.pid)


@pytest.mark.engine
def test_a_stale_spare_is_ended_and_the_run_starts_cold() -> None:
    spec = tiny_spec(tokens=2)
    pool = SparePool()
    stale = pool.prepare(Launch.for_spec(spec, {"VRAMTUI_SPARE_TEST": "another environment"}))
    assert stale is not None and stale.proc is not None
    session = Recorder.for_run(resolved(spec), spares=pool).run().snapshot()
    assert session.status == "completed" and session.environment.engine_start == COLD
    assert stale.proc.poll() is not None  # ended, and reaped
    assert pool.spares == []


@pytest.mark.engine
def test_the_spare_dies_with_the_app(tmp_path: os.PathLike[str]) -> None:
    from vramtui.tui.app import VramApp

    app = VramApp(tiny_spec(), out_dir=tmp_path, list_devices=lambda: CPU_ONLY)  # type: ignore[arg-type]
    assert app.spares is not None

    async def scenario() -> int:
        async with app.run_test(size=(100, 30)) as pilot:
            while not app.spares.pool.spares:  # type: ignore[union-attr]
                await pilot.pause(0.05)  # started after the first frame
            spare = app.spares.pool.spares[0]  # type: ignore[union-attr]
            assert spare.wait_ready(READY_S) and spare.alive
            await pilot.press("q")
            return spare.pid or -1

    pid = asyncio.run(scenario())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


PARENT = """
import sys, time
from vramtui.measure.engine.engine_process import Launch
from vramtui.measure.engine.spare import SparePool
from vramtui.runspec import RunSpec
spare = SparePool().prepare(Launch.for_spec(RunSpec()))
print(spare.pid, flush=True)
if sys.argv[1] == "ready":
    assert spare.wait_ready(180)
    print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.engine
@pytest.mark.parametrize("when", ["importing", "ready"])
def test_a_spare_ends_when_its_parent_is_killed(when: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), when], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    spare = psutil.Process(int(parent.stdout.readline()))
    if when == "ready":
        assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    try:
        spare.wait(timeout=READY_S)  # the spare sees its stdin close and exits
    except psutil.NoSuchProcess:
        pass
    assert not spare.is_running()


def test_ready_and_startup_events_round_trip() -> None:
    events = [ev.Ready(12, 3.5), ev.Startup(1.0, 1.1, 4.2, 9.0, False)]
    events.append(ev.Startup(None, 1.0, 2.0, 3.0, True))
    assert [ev.decode(ev.encode(e)) for e in events] == events


AFTER_THE_SPEC = """
import json, os, sys
from vramtui.measure.engine.engine_main import cuda_initialized, warm_imports
from vramtui.measure.engine.engine_run import Engine
from vramtui.runspec import RunSpec

warm_imports()
threads = len(os.listdir("/proc/self/task"))
cuda = cuda_initialized()
before = set(sys.modules)
spec = RunSpec.from_dict(json.loads(sys.argv[1]))
code = Engine(spec, lambda line: None).run()
new = sorted(set(sys.modules) - before)
print(json.dumps({"code": code, "new": new, "threads": threads, "cuda": cuda}))
"""


@pytest.mark.engine
def test_a_run_imports_nothing_after_its_spec_that_a_spare_could_have_imported() -> None:
    """Whatever transformers and the libraries under it import lazily as a model loads
    and generates, with the versions installed: an engine imports it before its spec
    (the rehearsal asks a run), so a spare's start after Run is no import. The engine
    itself ran nothing: one thread, no CUDA (a fork server forks it)."""
    spec = json.dumps(tiny_spec(tokens=3).to_dict())
    out = subprocess.run(
        [sys.executable, "-c", AFTER_THE_SPEC, spec], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "new": [], "threads": 1, "cuda": False}


REHEARSAL = """
import json, sys
from vramtui.measure.engine.rehearsal import modules_a_run_imports
print(json.dumps({"run": modules_a_run_imports(), "here": "torch" in sys.modules}))
"""


@pytest.mark.engine
def test_the_rehearsal_reports_what_a_run_imports_whatever_faults_a_test_set() -> None:
    """Asked in a process that has imported nothing, a run imports torch and
    transformers; the faults a test sets for the real run do not reach the rehearsal,
    and the asking process imports nothing itself."""
    env = {**os.environ, "VRAMTUI_TEST_CRASH_AT_TOKEN": "0"}
    out = subprocess.run(
        [sys.executable, "-c", REHEARSAL], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"torch", "transformers", "vramtui.measure.engine.model"} <= set(result["run"])
    assert result["here"] is False
