"""Drive one run: the engine process, the NVML poller, and the Session they feed.

`Recorder.run()` blocks (call it from a worker thread in the app, or the main
thread headless); `cancel()` may be called from any thread.
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable

from vramtui import __version__, nvml
from vramtui import events as ev
from vramtui.devices import check_device
from vramtui.engine.process import EngineProcess
from vramtui.estimator import ALLOC_CONF
from vramtui.session import NvmlSample, Session
from vramtui.spec import RunSpec, validate


def base_environment() -> dict[str, object]:
    env: dict[str, object] = {
        "vramtui": __version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
    driver = nvml.driver_version()
    if driver:
        env["driver"] = driver
    return env


class Recorder:
    def __init__(
        self,
        spec: RunSpec,
        *,
        session: Session | None = None,
        nvml_hz: float = 200.0,
        extra_env: dict[str, str] | None = None,
        use_nvml: bool = True,
    ) -> None:
        validate(spec)
        spec.device = check_device(spec.device)
        self.spec = spec
        self.session = session or Session(spec.to_dict(), base_environment())
        self.nvml_hz = nvml_hz
        self.use_nvml = use_nvml
        self.engine = EngineProcess(spec, extra_env=extra_env)
        self._cancelled = threading.Event()
        self._poller: nvml.Poller | None = None
        self._watch: nvml.DeviceWatch | None = None
        self._baseline: dict[str, int] = {}

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """End the engine (SIGTERM, then SIGKILL); the session ends 'cancelled'."""
        self._cancelled.set()
        self.engine.terminate()

    def _take_baseline(self) -> None:
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
        session.environment.update(nvml_index=gpu.index, gpu_name=gpu.name)
        baseline = self._baseline.get(nvml.normalise_uuid(gpu.uuid) or "")
        self._watch = nvml.DeviceWatch(gpu, hello.pid, baseline)

        def on_reading(r: nvml.Reading) -> None:
            session.add_nvml(NvmlSample(r.t, r.process_bytes, r.device_used, r.device_total))

        self._poller = nvml.Poller(self._watch, on_reading, hz=self.nvml_hz)
        self._poller.start()

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        session = self.session
        self._take_baseline()
        if self._cancelled.is_set():
            session.fail(ev.Failed("cancelled", "cancelled before start", "start"))
            return session
        self.engine.start()
        session.environment["engine_pid"] = self.engine.pid
        # The engine inherits the allocator's settings, which change reserved memory a lot.
        session.environment["cuda_alloc_conf"] = os.environ.get(ALLOC_CONF) or None
        if self._cancelled.is_set():  # cancelled while the engine was starting
            self.engine.terminate()
        try:
            for event in self.engine.events():
                if self._cancelled.is_set() and isinstance(event, ev.Failed):
                    event = ev.Failed(
                        "cancelled", "cancelled by the user", event.phase, event.token
                    )
                session.apply(event)
                if isinstance(event, ev.Hello):
                    self._on_hello(event)
                if on_event is not None:
                    on_event(event)
            code = self.engine.wait()
        finally:
            if self._poller is not None:
                self._poller.stop()
            self._finish_notices()
        if not session.finished:
            phase = session.current_phase
            token = session.tokens_done - 1 if session.tokens_done else None
            if self._cancelled.is_set():
                session.fail(ev.Failed("cancelled", "cancelled by the user", phase, token))
            else:
                tail = self.engine.stderr_tail(3).replace("\n", " | ")
                why = f"engine exited with code {code}" + (f": {tail}" if tail else "")
                session.fail(ev.Failed("crashed", why, phase, token))
        self.engine.close()
        return session

    def _finish_notices(self) -> None:
        watch = self._watch
        if watch is None:
            return
        for error in watch.errors:
            self.session.notice(error)
        if watch.mode == "baseline":
            self.session.notice(
                "engine PID not visible to NVML (container?): process memory is "
                "device used minus used before the run"
            )
        self.session.environment["nvml_process_source"] = watch.mode
