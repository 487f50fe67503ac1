"""Drive one child process (an engine for a spec, or the user's profiled program), the
NVML poller and the RSS watch, and the Session they feed.

`Recorder.for_run(run)` records an engine's run, `Recorder.for_program(program)` a
program's; both are the one Recorder, which differs only in how its child starts.
`Recorder.run()` blocks (call it from a worker thread in the app, or the main
thread headless); `cancel()` may be called from any thread.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import threading
from collections.abc import Callable

from vramtui import __version__
from vramtui.measure import events as ev
from vramtui.measure import nvml
from vramtui.measure.child_process import ChildProcess
from vramtui.measure.engine.engine_process import EngineProcess, Launch
from vramtui.measure.engine.spare import EngineFactory, SparePool, start_engine
from vramtui.measure.memory_watch import RssWatch, memory_limit
from vramtui.measure.script.program_process import Program, ScriptProcess
from vramtui.measure.session import Environment, NvmlSample, Session
from vramtui.measure.stderr_tail import last_lines
from vramtui.provenance import command_line, git_state
from vramtui.runspec import ResolvedRun
from vramtui.runspec.train_spec import TrainSpec
from vramtui.units import format_bytes

# An engine SIGKILLed (not by us) with its RSS at this share of the memory limit
# or more was most likely ended by the kernel's out-of-memory killer.
OOM_KILL_SHARE = 0.8
ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"

# Starts the child; returns it, and how it started (startup's COLD, WARM, FORKED or
# FORKED_SPARE for an engine; None for a program, which always starts fresh).
ChildStarter = Callable[[], "tuple[ChildProcess, str | None]"]


def base_environment() -> Environment:
    """This process's facts: versions, host, driver, the command line and the checkout."""
    git = git_state()
    return Environment(
        vramtui=__version__,
        platform=platform.platform(),
        hostname=platform.node(),
        driver=nvml.driver_version() or None,
        command=command_line(),
        vramtui_commit=git.commit,
        vramtui_dirty=git.dirty,
    )


# NVML reads a second: generation's tokens come every few milliseconds, a training step
# takes a tenth of a second or more and its reserved peak stays (segments are kept), and
# each read (the process list) costs the GPU's steps time: at 200 a second a plain LoRA
# loop on the H100 stepped 0.113 s against 0.101 s (benchmarks/results/train_gpu).
GENERATE_NVML_HZ = 200.0
TRAIN_NVML_HZ = 20.0


class Recorder:
    """Records one child into `session`: starts it with `start_child`, applies its events,
    watches its GPU with NVML once it says hello from CUDA, and its RSS throughout."""

    def __init__(
        self,
        start_child: ChildStarter,
        session: Session,
        *,
        alloc_conf: str | None = None,
        nvml_hz: float = 200.0,
        use_nvml: bool = True,
        spares: SparePool | None = None,
    ) -> None:
        self.start_child = start_child
        self.session = session
        self.alloc_conf = alloc_conf  # the child's PYTORCH_CUDA_ALLOC_CONF
        self.nvml_hz = nvml_hz
        self.use_nvml = use_nvml
        self.spares = spares  # the pool an engine may come from (a sweep queues spares there)
        self.child: ChildProcess | None = None  # once run() has started it
        self.exit_code: int | None = None  # the child's, once it has ended
        self._cancelled = threading.Event()
        self._cancel_reason = "cancelled by the user"
        self._poller: nvml.Poller | None = None
        self._watch: nvml.DeviceWatch | None = None  # the child's own GPU
        self._group = nvml.WatchGroup()  # it, and a placed model's other GPUs
        self._rss: RssWatch | None = None
        self._baseline: dict[str, int] = {}

    @classmethod
    def for_run(
        cls,
        run: ResolvedRun,
        *,
        session: Session | None = None,
        nvml_hz: float | None = None,
        extra_env: dict[str, str] | None = None,
        use_nvml: bool = True,
        spares: SparePool | None = None,
        make_engine: EngineFactory = EngineProcess,
        train: TrainSpec | None = None,
    ) -> Recorder:
        """An engine's run of `run`: a spare engine from `spares` serves it if one fits,
        else a fresh one from `make_engine`. With `train`, the engine trains as that
        recipe says (its base is `run.spec`) instead of generating. NVML is read
        `nvml_hz` times a second (by default as the workload needs, see above)."""
        if nvml_hz is None:
            nvml_hz = TRAIN_NVML_HZ if train is not None else GENERATE_NVML_HZ
        launch = Launch.for_spec(run.spec, extra_env)
        engine_spec = train or run.spec

        def start() -> tuple[ChildProcess, str | None]:
            return start_engine(engine_spec, launch, spares, make_engine)

        return cls(
            start,
            session or Session(engine_spec, base_environment()),
            alloc_conf=run.alloc_conf,
            nvml_hz=nvml_hz,
            use_nvml=use_nvml,
            spares=spares,
        )

    @classmethod
    def for_program(
        cls,
        program: Program,
        *,
        session: Session | None = None,
        nvml_hz: float = 200.0,
        sample_hz: float = 20.0,
        capture: bool = False,
        on_output: Callable[[str], None] | None = None,
        use_nvml: bool = True,
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> Recorder:
        """The user's program under vramtui's hooks, run by `python` and sampled at
        `sample_hz`; with `capture`, its output goes line by line to `on_output`
        (see ScriptProcess)."""
        env = dict(extra_env or {})

        def start() -> tuple[ChildProcess, str | None]:
            process = ScriptProcess(
                program,
                python=python,
                capture=capture,
                on_output=on_output,
                hz=sample_hz,
                extra_env=env,
            )
            process.start()
            return process, None

        return cls(
            start,
            session or Session(program.spec(), base_environment()),
            alloc_conf=env.get(ALLOC_CONF) or os.environ.get(ALLOC_CONF) or None,
            nvml_hz=nvml_hz,
            use_nvml=use_nvml,
        )

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """End the child (politely, then SIGKILL); the session ends 'cancelled', with
        `reason` as its message (e.g. 'interrupted by SIGTERM')."""
        if not self._cancelled.is_set():
            self._cancel_reason = reason
        self._cancelled.set()
        child = self.child
        if child is not None:
            child.terminate()

    def take_baseline(self) -> None:
        """What each GPU used before the child started (NVML's fallback for a PID it
        cannot see). run() takes it; a recorder fed by hand takes it itself."""
        if not self.use_nvml:
            return
        for gpu in nvml.gpus():
            self._baseline[nvml.normalise_uuid(gpu.uuid) or ""] = gpu.used

    def _on_hello(self, hello: ev.Hello) -> None:
        session = self.session
        if hello.backend != "cuda":
            session.notice(f"no NVML on {hello.backend}: figures are {hello.memory_source}")
            return
        if not self.use_nvml:
            return
        if not nvml.available():
            session.notice(f"NVML skipped: {nvml.unavailable_reason()}")
            return
        gpu = nvml.find_by_uuid(hello.device_uuid)
        if gpu is None:
            session.notice(
                f"NVML skipped: could not match {hello.device} to an NVML device by UUID"
            )
            return
        session.set_environment(nvml_index=gpu.index, gpu_name=gpu.name)
        baseline = self._baseline.get(nvml.normalise_uuid(gpu.uuid) or "")
        self._watch = nvml.DeviceWatch(gpu, hello.pid, baseline)
        self._group.add(None, self._watch)

        def on_readings(readings: list[tuple[str | None, nvml.Reading]]) -> None:
            for device, r in readings:
                sample = NvmlSample(r.t, r.process_bytes, r.device_used, r.device_total)
                session.add_nvml(sample, device)

        self._poller = nvml.Poller(self._group, on_readings, hz=self.nvml_hz)
        self._poller.start()

    def _on_placed(self, placed: ev.Placed) -> None:
        """A model placed across devices: what each GPU is (from the engine), the memory
        the CPU's RSS may grow to, and NVML on every other GPU the model uses."""
        facts: dict[str, dict[str, object]] = {}
        head = self.session.snapshot().environment.device
        for d in placed.devices:
            device = str(d["device"])
            if not device.startswith("cuda"):
                continue
            facts[device] = {"gpu_name": d.get("gpu_name"), "total_bytes": d.get("total_bytes")}
            if device != head and self._watch is not None:  # the run's own is watched
                facts[device]["nvml_index"] = self._watch_other(device, d.get("uuid"))
        self.session.set_environment(placed_gpus=facts, memory_limit_bytes=memory_limit())

    def _watch_other(self, device: str, uuid: str | None) -> int | None:
        """NVML on another GPU of a placed model (its index), polled with the run's own."""
        assert self._watch is not None
        gpu = nvml.find_by_uuid(uuid)
        if gpu is None:
            self.session.notice(f"NVML skipped on {device}: no NVML device has its UUID")
            return None
        baseline = self._baseline.get(nvml.normalise_uuid(gpu.uuid) or "")
        self._group.add(device, nvml.DeviceWatch(gpu, self._watch.pid, baseline))
        return gpu.index

    def _told(
        self, listener: Callable[[ev.Event], None], event: ev.Event
    ) -> Callable[[ev.Event], None] | None:
        """`listener` told of `event`; one that fails is told nothing more, and the run goes
        on being recorded (a progress line must never cost a measurement)."""
        try:
            listener(event)
        except Exception as exc:
            name = getattr(listener, "__qualname__", type(listener).__name__)
            self.session.notice(f"stopped telling {name} of the run's events: {exc!r}")
            return None
        return listener

    def _cancelled_failure(self, event: ev.Failed) -> ev.Failed:
        return ev.Failed("cancelled", self._cancel_reason, event.phase, event.token)

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        session = self.session
        self.take_baseline()
        if self._cancelled.is_set():
            session.fail(ev.Failed("cancelled", self._cancel_reason, "start"))
            return session
        child, how = self.start_child()
        self.child = child
        # The child inherits the allocator's settings, which change reserved memory a lot.
        session.set_environment(engine_pid=child.pid, cuda_alloc_conf=self.alloc_conf)
        if how is not None:
            session.set_environment(engine_start=how)
        if child.pid is not None:
            self._rss = RssWatch(child.pid)
            self._rss.start()
        if self._cancelled.is_set():  # cancelled while the child was starting
            child.terminate()
        try:
            for event in child.events():
                if self._cancelled.is_set() and isinstance(event, ev.Failed):
                    event = self._cancelled_failure(event)
                session.apply(event)
                if isinstance(event, ev.Hello):
                    self._on_hello(event)
                elif isinstance(event, ev.Placed):
                    self._on_placed(event)
                if on_event is not None:
                    on_event = self._told(on_event, event)
            code = self.exit_code = child.wait()
        finally:
            self.stop_watching()
        if not session.snapshot().finished:
            session.fail(self._exit_failure(code, child))
        child.close()
        return session

    def stop_watching(self) -> None:
        """Stop the NVML poller and the RSS watch, and note in the session how NVML saw
        the child (a recorder fed by hand, as `vramtui.track()` does, calls this itself)."""
        if self._poller is not None:
            self._poller.stop()
        if self._rss is not None:
            self._rss.stop()
        self._finish_notices()

    def _exit_failure(self, code: int, child: ChildProcess) -> ev.Failed:
        """Why the child ended without saying so: cancelled, OOM-killed or crashed."""
        view = self.session.snapshot()
        phase = view.current_phase
        token = view.tokens_done - 1 if view.tokens_done else None
        if self._cancelled.is_set():
            return ev.Failed("cancelled", self._cancel_reason, phase, token)
        peak = self._rss.peak if self._rss is not None else None
        limit = memory_limit()
        if code == -signal.SIGKILL and peak is not None and peak >= OOM_KILL_SHARE * limit:
            why = (
                "killed by the system, probably out of memory: RSS "
                f"{format_bytes(peak, 2)} of {format_bytes(limit, 2)}"
            )
            return ev.Failed("oom", why, phase, token, held_bytes=peak)
        tail = last_lines(child.stderr_tail(200), 3).replace("\n", " | ")
        why = f"engine exited with code {code}" + (f": {tail}" if tail else "")
        return ev.Failed("crashed", why, phase, token)

    def _finish_notices(self) -> None:
        watch = self._watch
        if watch is None:
            return
        for device, each in self._group.watches:
            on = f" ({device})" if device else ""
            for error in each.errors:
                self.session.notice(error + on)
            if each.mode == "baseline":
                self.session.notice(
                    f"engine PID not visible to NVML{on} (container?): process memory is "
                    "device used minus used before the run"
                )
        self.session.set_environment(nvml_process_source=watch.mode)
