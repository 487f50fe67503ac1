"""Degraded NVML environments, with a fake pynvml: never a crash, never a wrong attribution."""

from __future__ import annotations

import stat
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from helpers import WITH_GPU

import vramtui
from vramtui.measure import events as ev
from vramtui.measure import nvml
from vramtui.measure.device_view import devices_summary
from vramtui.measure.engine.engine_process import EngineProcess, Launch
from vramtui.measure.recorder import Recorder
from vramtui.measure.script.program_process import Program
from vramtui.runspec import RunSpec, resolve

GIB = 1024**3


@dataclass
class FakeGpu:
    uuid: str
    total: int = 80 * GIB
    used: int = 1 * GIB
    processes: list[tuple[int, int]] = field(default_factory=list)
    processes_supported: bool = True


class NVMLError(Exception):
    pass


def fake_pynvml(gpus: list[FakeGpu], *, init_error: str | None = None) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    def init() -> None:
        if init_error:
            raise NVMLError(init_error)

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: "999.1"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda g: "Fake GPU"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUUID = lambda g: g.uuid  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda g: types.SimpleNamespace(  # type: ignore[attr-defined]
        total=g.total, used=g.used, free=g.total - g.used
    )

    def processes(g: FakeGpu) -> list[types.SimpleNamespace]:
        if not g.processes_supported:
            raise NVMLError("Not Supported")
        return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in g.processes]

    mod.nvmlDeviceGetComputeRunningProcesses = processes  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def _install(module: types.ModuleType) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", module)
        fresh = {"init": None, "error": None, "module": None, "no_driver": False}
        monkeypatch.setattr(nvml, "_state", fresh)

    yield _install


def hello(uuid: str | None, pid: int = 4242) -> ev.Hello:
    return ev.Hello(pid, "cuda:0", "cuda", "Fake GPU", uuid, 80 * GIB, "torch.cuda", {})


# The two kinds of child a Recorder drives: an engine for a spec, the user's program.
KINDS = ["engine", "program"]
RUN = resolve(RunSpec(model="opt-125m", tokens=5, device="cuda:0"), WITH_GPU)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def recorder(kind: str) -> Recorder:
    """A recorder of either kind, made as `vramtui run` and `vramtui profile` make it."""
    if kind == "engine":
        return Recorder.for_run(RUN, use_nvml=True)
    return Recorder.for_program(Program(("train.py",)), use_nvml=True)


def test_no_library_is_a_notice_not_a_crash(install, kind: str) -> None:  # type: ignore[no-untyped-def]
    install(fake_pynvml([], init_error="NVML Shared Library Not Found"))
    assert not nvml.available()
    assert nvml.gpus() == []
    rec = recorder(kind)
    rec._on_hello(hello("GPU-a"))
    assert rec._poller is None
    assert any(
        "NVML skipped" in n and "Library Not Found" in n for n in rec.session.snapshot().notices
    )


def test_cuda_and_nvml_order_differ_matched_by_uuid(install, kind: str) -> None:  # type: ignore[no-untyped-def]
    gpus = [FakeGpu("GPU-aaaa"), FakeGpu("GPU-bbbb", processes=[(4242, 3 * GIB)])]
    install(fake_pynvml(gpus))
    rec = recorder(kind)
    rec._baseline = {"bbbb": GIB}
    rec._on_hello(hello("bbbb"))  # torch reports the UUID without the GPU- prefix
    try:
        assert rec.session.snapshot().environment.nvml_index == 1
        reading = rec._watch.read()  # type: ignore[union-attr]
        assert reading.process_bytes == 3 * GIB
    finally:
        rec._poller.stop()  # type: ignore[union-attr]


def test_unmatched_uuid_skips_nvml_instead_of_guessing(install, kind: str) -> None:  # type: ignore[no-untyped-def]
    install(fake_pynvml([FakeGpu("GPU-aaaa")]))
    rec = recorder(kind)
    rec._on_hello(hello("cccc"))
    assert rec._poller is None
    assert any("could not match" in n for n in rec.session.snapshot().notices)


def test_invisible_pid_falls_back_to_device_minus_baseline(install) -> None:  # type: ignore[no-untyped-def]
    gpu = FakeGpu("GPU-aaaa", used=2 * GIB, processes=[(1, 5 * GIB)])  # a host PID, not ours
    install(fake_pynvml([gpu]))
    watch = nvml.DeviceWatch(nvml.gpus()[0], pid=4242, baseline_used=2 * GIB)
    assert watch.read().process_bytes is None  # nothing of ours yet: no figure, not a guess
    gpu.used = 5 * GIB
    assert watch.read().process_bytes == 3 * GIB
    assert watch.mode == "baseline"


def test_baseline_mode_is_said_in_the_session(install, kind: str) -> None:  # type: ignore[no-untyped-def]
    gpu = FakeGpu("GPU-aaaa", used=2 * GIB)
    install(fake_pynvml([gpu]))
    rec = recorder(kind)
    rec._baseline = {"aaaa": 2 * GIB}
    rec._on_hello(hello("aaaa"))
    gpu.used = 4 * GIB
    rec._watch.read()  # type: ignore[union-attr]
    rec._poller.stop()  # type: ignore[union-attr]
    rec._finish_notices()
    assert rec.session.snapshot().environment.nvml_process_source == "baseline"
    assert any("not visible to NVML" in n for n in rec.session.snapshot().notices)


def test_process_query_not_supported(install) -> None:  # type: ignore[no-untyped-def]
    install(fake_pynvml([FakeGpu("GPU-aaaa", processes_supported=False)]))
    watch = nvml.DeviceWatch(nvml.gpus()[0], pid=4242, baseline_used=None)
    reading = watch.read()
    assert reading.process_bytes is None and reading.device_used == GIB
    assert any("not supported" in e for e in watch.errors)


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's own name
    pass


def test_no_driver_means_the_gpus_are_counted_as_none(install) -> None:  # type: ignore[no-untyped-def]
    from vramtui.measure.device_inventory import available

    mod = fake_pynvml([])

    def no_library() -> None:
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    mod.nvmlInit = no_library  # type: ignore[attr-defined]
    install(mod)
    found = available()
    assert found.gpus_counted and found.ids() == ["cpu"]  # so cuda:7 is refused at once


def test_nvml_that_cannot_answer_leaves_the_gpus_uncounted(install) -> None:  # type: ignore[no-untyped-def]
    from vramtui.measure.device_inventory import available

    install(fake_pynvml([], init_error="Insufficient Permissions"))
    assert not available().gpus_counted  # cuda:N is left for the engine to check


def test_each_gpu_of_a_placed_model_is_polled_matched_by_uuid(install, kind: str) -> None:  # type: ignore[no-untyped-def]
    # NVML lists cuda:1 first: each GPU is found by the UUID the engine reports for it
    second = FakeGpu("GPU-bbbb", used=9 * GIB, processes=[(4242, 7 * GIB)])
    first = FakeGpu("GPU-aaaa", used=4 * GIB, processes=[(4242, 3 * GIB)])
    install(fake_pynvml([second, first, FakeGpu("GPU-cccc")]))
    rec = recorder(kind)
    head = hello("aaaa")
    rec.session.apply(head)
    rec._on_hello(head)
    rec._poller.stop()  # type: ignore[union-attr]  # readings below are taken by hand
    placed = ev.Placed(
        [
            {"device": "cuda:0", "weights_bytes": 2 * GIB, "layers": [0], "uuid": "aaaa"},
            {"device": "cuda:1", "weights_bytes": 5 * GIB, "layers": [1], "uuid": "GPU-bbbb"},
            {"device": "cuda:2", "weights_bytes": 1, "layers": [], "uuid": "dddd"},
            {"device": "cpu", "weights_bytes": GIB, "layers": [2]},
        ]
    )
    rec.session.apply(placed)
    rec._on_placed(placed)
    assert [d for d, _ in rec._group.watches] == [None, "cuda:1"]
    gpus = rec.session.snapshot().environment.placed_gpus
    assert gpus["cuda:1"]["nvml_index"] == 0 and gpus["cuda:2"]["nvml_index"] is None
    assert any("NVML skipped on cuda:2" in n for n in rec.session.snapshot().notices)
    on_readings = rec._poller.on_reading  # type: ignore[union-attr]
    on_readings(rec._group.read())
    second.processes = [(4242, 8 * GIB)]
    on_readings(rec._group.read())
    view = rec.session.snapshot()
    devices = {d["device"]: d for d in devices_summary(view)}
    assert devices["cuda:0"]["peak_nvml_process_bytes"] == 3 * GIB  # the run's own stream
    assert devices["cuda:1"]["peak_nvml_process_bytes"] == 8 * GIB
    assert devices["cuda:1"]["peak_nvml_device_used_bytes"] == 9 * GIB
    assert devices["cpu"]["peak_nvml_process_bytes"] is None
    assert view.peaks["nvml_process"].value == 3 * GIB  # cuda:1 never mixed into cuda:0's
    assert [s.process_bytes for s in view.device_nvml["cuda:1"]] == [7 * GIB, 8 * GIB]
    assert {s.process_bytes for s in view.nvml} == {3 * GIB}


# Stands in for a child on a CUDA machine (python itself, as the recorder starts it:
# `-m ...engine_main --events-fd N` or `-c BOOT --events-fd N ... -- SCRIPT`): says
# hello from the fake NVML's GPU, samples, waits until NVML has seen it, and ends.
CUDA_CHILD = """\
import os, sys, time
sys.path.insert(0, {root!r})
from vramtui.measure import events as ev

GIB = 1024**3
out = os.fdopen(int(sys.argv[sys.argv.index("--events-fd") + 1]), "w", buffering=1)


def emit(event):
    out.write(ev.encode(event) + "\\n")


emit(ev.Hello(os.getpid(), "cuda:0", "cuda", "Fake GPU", "aaaa", 80 * GIB, "torch.cuda", {{}}))
emit(ev.Phase("decode", time.monotonic()))
emit(ev.Sample(0, time.monotonic(), "decode", GIB, 2 * GIB, GIB, 0))
while not os.path.exists({seen!r}):  # NVML has read this process's memory
    time.sleep(0.01)
emit(ev.Done(1, 0.1, 0.1, 0.1, 0.2, 10.0, 10.0, GIB))
"""


def cuda_child(folder: Path, seen: Path) -> str:
    """An executable that plays CUDA_CHILD, to stand in for the Python a child runs."""
    path = folder / "cuda-python"
    root = str(Path(vramtui.__file__).resolve().parent.parent)
    path.write_text(f"#!{sys.executable}\n" + CUDA_CHILD.format(root=root, seen=str(seen)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def cuda_recorder(kind: str, python: str) -> Recorder:
    """A recorder of `kind` whose child runs `python`, made as the commands make it."""
    if kind == "engine":

        def make_engine(launch: Launch) -> EngineProcess:
            return EngineProcess(replace(launch, python=python))

        return Recorder.for_run(RUN, use_nvml=True, make_engine=make_engine)
    return Recorder.for_program(Program(("train.py",)), use_nvml=True, python=python)


def test_a_cuda_child_with_nvml_answering_has_its_nvml_series_recorded(  # type: ignore[no-untyped-def]
    install, kind: str, tmp_path: Path
) -> None:
    """The case `vramtui profile` crashed on: a child that reports CUDA while NVML
    answers. Its GPU is watched by NVML for its whole run, whichever kind it is."""
    gpu = FakeGpu("GPU-aaaa", used=GIB)
    module = fake_pynvml([gpu])
    seen = tmp_path / "nvml-has-read-it"
    list_processes: Callable[[FakeGpu], list[types.SimpleNamespace]]
    list_processes = module.nvmlDeviceGetComputeRunningProcesses  # type: ignore[attr-defined]

    readings: list[int] = []

    def processes(g: FakeGpu) -> list[types.SimpleNamespace]:
        found = list_processes(g)
        readings.extend(p.pid for p in found)
        if len(readings) >= 2:  # the poller's one thread has recorded a reading of it
            seen.touch()  # (it is taking the next one): the child may end
        return found

    module.nvmlDeviceGetComputeRunningProcesses = processes  # type: ignore[attr-defined]
    install(module)
    rec = cuda_recorder(kind, cuda_child(tmp_path, seen))

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Hello):  # the GPU now holds the child's memory
            gpu.used = 4 * GIB
            gpu.processes = [(event.pid, 3 * GIB)]

    session = rec.run(on_event)
    view = session.snapshot()
    assert view.status == "completed", view.failure
    assert view.environment.nvml_index == 0 and view.environment.gpu_name == "Fake GPU"
    assert view.environment.nvml_process_source == "pid"
    assert view.nvml and view.peaks["nvml_process"].value == 3 * GIB
    assert max(s.device_used for s in view.nvml if s.device_used is not None) == 4 * GIB
    assert rec.exit_code == 0
