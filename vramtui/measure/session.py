"""A run's record: spec, environment, every sample, peaks. One writer, frozen views.

Pure data. The thread that reads the engine and the NVML poller write through
`apply`, `add_nvml`, `fail`, `notice` and `set_environment`, under a lock;
every reader (screens, breakdown, exporters) takes `snapshot()`, an immutable
`SessionView` of one moment, and reads only that. Memory stays bounded: past
`max_nvml_samples` the NVML stream is thinned, keeping the largest reading of
each window.
"""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.measure.nvml_stream import NvmlStream
from vramtui.measure.session_view import (
    ENGINE_SERIES,
    NVML_SERIES,
    DeviceNvml,
    NvmlSample,
    Peak,
    SessionView,
    phase_at,
    step_phase,
    token_at,
)
from vramtui.runspec.program_spec import SessionSpec

__all__ = [
    "ENGINE_SERIES",
    "DeviceNvml",
    "Environment",
    "NVML_SERIES",
    "NvmlSample",
    "Peak",
    "Session",
    "SessionView",
    "step_phase",
]

FINAL = ("completed", "failed", "cancelled")
# What a reader sees only through a snapshot; writing one of these on a Session is a bug.
_READ_ONLY = {f.name for f in fields(SessionView)} - {"spec", "t0", "started_wall"}


class Session:
    """Append-only record of one run, written by one thread, read through snapshots."""

    def __init__(
        self,
        spec: SessionSpec,
        environment: Environment | None = None,
        *,
        t0: float | None = None,
        max_nvml_samples: int = 200_000,
    ) -> None:
        self.spec = spec
        self.t0 = time.monotonic() if t0 is None else t0
        self.started_wall = time.time()
        self.max_nvml_samples = max_nvml_samples
        self._lock = threading.Lock()
        self._version = 0
        self._view: SessionView | None = None
        self._environment = environment or Environment()
        self._status = "pending"
        self._hello: ev.Hello | None = None
        self._startup: ev.Startup | None = None
        self._loaded: ev.Loaded | None = None
        self._done: ev.Done | None = None
        self._failure: ev.Failed | None = None
        self._samples: list[ev.Sample] = []
        self._token_samples: list[ev.Sample] = []
        self._token_times: list[float] = []
        self._phases: list[ev.Phase] = []
        self._phase_times: list[float] = []
        self._notices: list[str] = []
        self._peaks: dict[str, Peak] = {}
        self._nvml = NvmlStream(max_nvml_samples)  # the run's own device
        self._device_nvml: dict[str, NvmlStream] = {}  # a placed model's other GPUs
        self._nvml_rate_hz: float | None = None
        self._ended_at: float | None = None
        self._generations: list[ev.Generation] = []
        self._allocation_snapshot: ev.AllocationSnapshot | None = None
        self._placed: ev.Placed | None = None
        self._device_peaks: dict[str, dict[str, Peak]] = {}  # device -> series -> peak
        self._train_loaded: ev.TrainLoaded | None = None
        self._train_steps: list[ev.TrainStep] = []

    # ---- reading: everything goes through a snapshot -------------------------------
    def snapshot(self) -> SessionView:
        """An immutable view of the session now (the same object until it changes)."""
        with self._lock:
            if self._view is None:
                self._view = self._make_view()
            return self._view

    def _make_view(self) -> SessionView:
        return SessionView(
            spec=self.spec,
            environment=self._environment,
            t0=self.t0,
            started_wall=self.started_wall,
            status=self._status,
            hello=self._hello,
            loaded=self._loaded,
            done=self._done,
            failure=self._failure,
            samples=tuple(self._samples),
            token_samples=tuple(self._token_samples),
            phases=tuple(self._phases),
            notices=tuple(self._notices),
            peaks=dict(self._peaks),
            nvml=self._nvml.samples(),
            nvml_seen=self._nvml.seen,
            nvml_token_max=dict(self._nvml.token_max),
            nvml_rate_hz=self._nvml_rate_hz,
            ended_at=self._ended_at,
            startup=self._startup,
            generations=tuple(self._generations),
            allocation_snapshot=self._allocation_snapshot,
            placed=self._placed,
            device_peaks={d: dict(p) for d, p in self._device_peaks.items()},
            device_nvml={d: n.samples() for d, n in self._device_nvml.items()},
            device_nvml_token_max={d: dict(n.token_max) for d, n in self._device_nvml.items()},
            train_loaded=self._train_loaded,
            train_steps=tuple(self._train_steps),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _READ_ONLY:
            raise AttributeError(f"Session.{name} is read through snapshot(); use a writer method")
        super().__setattr__(name, value)

    # ---- writing -------------------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1
        self._view = None

    def apply(self, event: ev.Event) -> None:
        with self._lock:
            self._changed()
            if isinstance(event, ev.Sample):
                self._add_sample(event)
            elif isinstance(event, ev.Phase):
                self._phases.append(event)
                self._phase_times.append(event.t)
                if self._status == "pending":
                    self._status = "running"
            elif isinstance(event, ev.Hello):
                self._hello = event
                self._environment = self._environment.updated(
                    device=event.device,
                    backend=event.backend,
                    device_name=event.device_name,
                    device_total_bytes=event.total_memory,
                    memory_source=event.memory_source,
                    engine_pid=event.pid,
                ).with_versions(event.versions)
                self._status = "running"
            elif isinstance(event, ev.Generation):
                self._generations.append(event)
            elif isinstance(event, ev.AllocationSnapshot):
                self._allocation_snapshot = event
            elif isinstance(event, ev.Loaded):
                self._loaded = event
            elif isinstance(event, ev.Startup):
                self._startup = event
            elif isinstance(event, ev.Placed):
                self._placed = event
            elif isinstance(event, ev.TrainLoaded):
                self._train_loaded = event
            elif isinstance(event, ev.TrainStep):
                self._train_steps.append(event)
            elif isinstance(event, ev.Done):
                self._done = event
                self._end("completed")
            elif isinstance(event, ev.Failed):
                self._failure = event
                self._end("cancelled" if event.kind == "cancelled" else "failed")

    def fail(self, failure: ev.Failed) -> None:
        """Record a failure seen from outside the engine (crash, cancel), once."""
        with self._lock:
            if self._status in FINAL:
                return
            self._changed()
            self._failure = failure
            self._end("cancelled" if failure.kind == "cancelled" else "failed")

    def notice(self, text: str) -> None:
        with self._lock:
            if text not in self._notices:
                self._changed()
                self._notices.append(text)

    def set_environment(self, **values: object) -> None:
        """Record facts of where the run runs (Environment's fields; any other name is a
        TypeError)."""
        with self._lock:
            self._changed()
            self._environment = self._environment.updated(**values)

    def end_at(self, t: float) -> None:
        """Put the end of a finished run at `t` (a replay's clock, not the wall's)."""
        with self._lock:
            self._changed()
            self._ended_at = t

    def add_nvml(self, sample: NvmlSample, device: str | None = None) -> None:
        """A reading of the run's own GPU; or, with `device`, of another GPU a placed
        model uses (its peaks go with that device's, its readings to a stream of its own)."""
        with self._lock:
            self._changed()
            phase = self._phase_at(sample.t)
            token = self._token_at(sample.t)
            if device is None or device == self._environment.device:
                stream = self._nvml
                self._track("nvml_process", sample.process_bytes, token, phase, sample.t)
                self._track("nvml_device_used", sample.device_used, token, phase, sample.t)
            else:
                stream = self._device_nvml.setdefault(device, NvmlStream(self.max_nvml_samples))
                peaks = self._device_peaks.setdefault(device, {})
                _better(peaks, "nvml_process", sample.process_bytes, token, phase, sample.t)
                _better(peaks, "nvml_device_used", sample.device_used, token, phase, sample.t)
            stream.fold(sample, self._token_times, self._in_step)
            stream.add(sample)

    def _in_step(self, t: float) -> bool:
        return self._phase_at(t) in ("prefill", "decode")

    def _end(self, status: str) -> None:
        for stream in (self._nvml, *self._device_nvml.values()):
            stream.end()  # the newest window stored; waiting readings have no token
        self._status = status
        self._ended_at = time.monotonic()
        self._nvml_rate_hz = self._nvml.rate_hz()

    def _add_sample(self, sample: ev.Sample) -> None:
        self._samples.append(sample)
        if sample.token is not None:
            self._token_samples.append(sample)
            self._token_times.append(sample.t)
            token = len(self._token_times) - 1
            for stream in (self._nvml, *self._device_nvml.values()):
                stream.token_sampled(token, sample.t, self._in_step)
        phase = step_phase(sample)
        for name in ENGINE_SERIES:
            self._track(name, getattr(sample, name), sample.token, phase, sample.t)
        for device, *values in sample.devices or ():
            peaks = self._device_peaks.setdefault(device, {})
            for name, value in zip(ENGINE_SERIES, values, strict=True):
                _better(peaks, name, value, sample.token, phase, sample.t)

    def _track(self, name: str, value: int | None, token: int | None, phase: str, t: float) -> None:
        _better(self._peaks, name, value, token, phase, t)

    def _phase_at(self, t: float) -> str:
        return phase_at(self._phases, self._phase_times, t)

    def _token_at(self, t: float) -> int | None:
        return token_at(self._phases, self._phase_times, self._token_times, t)


def _better(
    peaks: dict[str, Peak], name: str, value: int | None, token: int | None, phase: str, t: float
) -> None:
    """Keep `value` as the peak of `name` if it is the largest yet."""
    if value is not None and (name not in peaks or value > peaks[name].value):
        peaks[name] = Peak(value, token, phase, t)
