"""A run's record: spec, environment, every sample, peaks and summary.

Pure data. One writer (the thread that reads the engine and the NVML poller)
appends; readers (views, exporters) take consistent copies under a lock.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass
from typing import Any

from vramtui import events as ev

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
# Peak-tracked series and where each comes from.
ENGINE_SERIES = ("allocated", "reserved", "step_peak")
NVML_SERIES = ("nvml_process", "nvml_device_used")


@dataclass(frozen=True)
class NvmlSample:
    t: float
    process_bytes: int | None
    device_used: int | None
    device_total: int | None


@dataclass(frozen=True)
class Peak:
    value: int
    token: int | None
    phase: str
    t: float


def step_phase(sample: ev.Sample) -> str:
    """The phase a measurement belongs to: token 0's step is the prefill forward."""
    return "prefill" if sample.token == 0 else sample.phase


class Session:
    """Append-only record of one run. Memory stays bounded for long runs."""

    def __init__(
        self,
        spec: dict[str, Any],
        environment: dict[str, Any] | None = None,
        *,
        t0: float | None = None,
        max_nvml_samples: int = 200_000,
    ) -> None:
        self.spec = dict(spec)
        self.environment: dict[str, Any] = dict(environment or {})
        self.t0 = time.monotonic() if t0 is None else t0
        self.started_wall = time.time()
        self.status = "pending"
        self.hello: ev.Hello | None = None
        self.loaded: ev.Loaded | None = None
        self.done: ev.Done | None = None
        self.failure: ev.Failed | None = None
        self.samples: list[ev.Sample] = []
        self.token_samples: list[ev.Sample] = []
        self.nvml: list[NvmlSample] = []
        self.phases: list[ev.Phase] = []
        self.notices: list[str] = []
        self.peaks: dict[str, Peak] = {}
        self.nvml_rate_hz: float | None = None
        self.ended_at: float | None = None
        self.max_nvml_samples = max_nvml_samples
        self._nvml_decimation = 1
        self._nvml_pending: NvmlSample | None = None
        # Sample times kept beside the records, for bisecting at 200 Hz without copying.
        self._phase_times: list[float] = []
        self._token_times: list[float] = []
        self._nvml_seen = 0
        self._nvml_token_max: dict[int, int] = {}
        self._nvml_assigned = 0
        self._lock = threading.Lock()

    # ---- writing -----------------------------------------------------------------
    def apply(self, event: ev.Event) -> None:
        with self._lock:
            if isinstance(event, ev.Sample):
                self._add_sample(event)
            elif isinstance(event, ev.Phase):
                self.phases.append(event)
                self._phase_times.append(event.t)
                if self.status == "pending":
                    self.status = "running"
            elif isinstance(event, ev.Hello):
                self.hello = event
                self.environment.update(
                    device=event.device,
                    backend=event.backend,
                    device_name=event.device_name,
                    device_total_bytes=event.total_memory,
                    memory_source=event.memory_source,
                    engine_pid=event.pid,
                    **event.versions,
                )
                self.status = "running"
            elif isinstance(event, ev.Loaded):
                self.loaded = event
            elif isinstance(event, ev.Done):
                self.done = event
                self._end("completed")
            elif isinstance(event, ev.Failed):
                self.failure = event
                self._end("cancelled" if event.kind == "cancelled" else "failed")

    def fail(self, failure: ev.Failed) -> None:
        """Record a failure seen from outside the engine (crash, cancel), once."""
        with self._lock:
            if self.status in ("completed", "failed", "cancelled"):
                return
            self.failure = failure
            self._end("cancelled" if failure.kind == "cancelled" else "failed")

    def notice(self, text: str) -> None:
        with self._lock:
            if text not in self.notices:
                self.notices.append(text)

    def add_nvml(self, sample: NvmlSample) -> None:
        with self._lock:
            self._nvml_seen += 1
            phase = self._phase_at(sample.t)
            token = self._token_at(sample.t)
            self._track("nvml_process", sample.process_bytes, token, phase, sample.t)
            self._track("nvml_device_used", sample.device_used, token, phase, sample.t)
            # Past the cap, one sample in `decimation` is stored: the largest of
            # its window, so a spike between stored samples is never dropped.
            pending = self._nvml_pending
            if pending is None or _nvml_key(sample) > _nvml_key(pending):
                self._nvml_pending = pending = sample
            if self._nvml_seen % self._nvml_decimation:
                return
            self.nvml.append(pending)
            self._nvml_pending = None
            if len(self.nvml) >= self.max_nvml_samples:
                self._thin_nvml()

    def _thin_nvml(self) -> None:
        """Halve the stored NVML stream, keeping the larger of each pair."""
        self._assign_nvml_to_tokens()
        kept = []
        for i in range(0, len(self.nvml) - 1, 2):
            a, b = self.nvml[i], self.nvml[i + 1]
            kept.append(a if _nvml_key(a) >= _nvml_key(b) else b)
        if len(self.nvml) % 2:
            kept.append(self.nvml[-1])
        self._nvml_assigned = len(kept) if self._nvml_assigned >= len(self.nvml) else 0
        self.nvml = kept
        self._nvml_decimation *= 2

    def _end(self, status: str) -> None:
        if self._nvml_pending is not None:  # the newest window, not yet stored
            self.nvml.append(self._nvml_pending)
            self._nvml_pending = None
        self.status = status
        self.ended_at = time.monotonic()
        if self.nvml and len(self.nvml) > 1:
            span = self.nvml[-1].t - self.nvml[0].t
            if span > 0:
                self.nvml_rate_hz = (self._nvml_seen - 1) / span

    def _add_sample(self, sample: ev.Sample) -> None:
        self.samples.append(sample)
        if sample.token is not None:
            self.token_samples.append(sample)
            self._token_times.append(sample.t)
        phase = step_phase(sample)
        for name in ENGINE_SERIES:
            self._track(name, getattr(sample, name), sample.token, phase, sample.t)

    def _track(self, name: str, value: int | None, token: int | None, phase: str, t: float) -> None:
        if value is None:
            return
        best = self.peaks.get(name)
        if best is None or value > best.value:
            self.peaks[name] = Peak(value, token, phase, t)

    def _phase_at(self, t: float) -> str:
        times = self._phase_times
        i = bisect_right(times, t)
        return self.phases[i - 1].name if i else "start"

    def _token_at(self, t: float) -> int | None:
        """The token whose step was running at time t (None outside generation)."""
        times = self._token_times
        i = bisect_left(times, t)
        if not times or (i == 0 and self._phase_at(t) != "prefill"):
            return 0 if self._phase_at(t) == "prefill" else None
        if i >= len(times):
            return len(times) if self._phase_at(t) == "decode" else None
        return i

    # ---- reading -----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    @property
    def tokens_done(self) -> int:
        return len(self.token_samples)

    @property
    def current_phase(self) -> str:
        if self.finished:
            return self.status
        return self.phases[-1].name if self.phases else "start"

    def elapsed(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now or time.monotonic())
        return max(0.0, end - self.t0)

    def live_tokens_per_s(self, window: int = 50) -> float | None:
        """Decode rate over the last `window` tokens."""
        with self._lock:
            recent = self.token_samples[-window - 1 :]
        if len(recent) < 2:
            return None
        span = recent[-1].t - recent[0].t
        return (len(recent) - 1) / span if span > 0 else None

    def _assign_nvml_to_tokens(self) -> None:
        """Fold NVML samples into a per-token max, for those whose token is known."""
        if not self.token_samples:
            return
        last_t = self.token_samples[-1].t
        times = self._token_times
        while self._nvml_assigned < len(self.nvml):
            sample = self.nvml[self._nvml_assigned]
            if sample.t > last_t and not self.finished:
                break
            self._nvml_assigned += 1
            if sample.process_bytes is None:
                continue
            i = bisect_left(times, sample.t)
            if i >= len(times):
                continue
            if i == 0 and self._phase_at(sample.t) not in ("prefill", "decode"):
                continue
            prev = self._nvml_token_max.get(i)
            if prev is None or sample.process_bytes > prev:
                self._nvml_token_max[i] = sample.process_bytes

    def token_series(self, name: str) -> list[tuple[int, int]]:
        """(token, bytes) for one series over the generated tokens.

        Engine series come straight from the samples; `nvml_process` is the
        largest NVML reading during each token's step, carried forward across
        steps shorter than the poll interval.
        """
        with self._lock:
            if name in ENGINE_SERIES or name == "kv_bytes":
                return [
                    (s.token, getattr(s, name))
                    for s in self.token_samples
                    if getattr(s, name) is not None
                ]  # type: ignore[misc]
            if name == "nvml_process":
                self._assign_nvml_to_tokens()
                out: list[tuple[int, int]] = []
                last: int | None = None
                for s in self.token_samples:
                    value = self._nvml_token_max.get(s.token, last)  # type: ignore[arg-type]
                    if value is not None:
                        out.append((s.token, value))  # type: ignore[arg-type]
                        last = value
                return out
        raise KeyError(name)

    def time_series(self, name: str) -> list[tuple[float, int]]:
        """(seconds since start, bytes) for one series."""
        with self._lock:
            if name in ENGINE_SERIES or name == "kv_bytes":
                return [
                    (s.t - self.t0, getattr(s, name))
                    for s in self.samples
                    if getattr(s, name) is not None
                ]
            attr = {"nvml_process": "process_bytes", "nvml_device_used": "device_used"}[name]
            return [
                (s.t - self.t0, getattr(s, attr)) for s in self.nvml if getattr(s, attr) is not None
            ]

    def latest(self, name: str) -> int | None:
        with self._lock:
            if name in ENGINE_SERIES or name == "kv_bytes":
                for s in reversed(self.samples[-4:]):
                    value = getattr(s, name)
                    if value is not None:
                        return value
                return None
            attr = {"nvml_process": "process_bytes", "nvml_device_used": "device_used"}[name]
            for n in reversed(self.nvml[-4:]):
                if getattr(n, attr) is not None:
                    return getattr(n, attr)
            return None

    def nvml_rows(self) -> list[tuple[NvmlSample, int | None, str]]:
        """Every stored NVML sample with its token and phase, for export."""
        with self._lock:
            return [(s, self._token_at(s.t), self._phase_at(s.t)) for s in self.nvml]

    def device_total(self) -> int | None:
        with self._lock:
            for s in reversed(self.nvml[-4:]):
                if s.device_total:
                    return s.device_total
        return self.hello.total_memory if self.hello else None

    def summary(self) -> dict[str, Any]:
        """The JSON summary: status, tokens, rates, peaks, spec and environment."""
        with self._lock:
            peaks = {name: asdict(p) for name, p in self.peaks.items()}
            for p in peaks.values():
                p["t_s"] = round(p.pop("t") - self.t0, 6)
            params = self.loaded.params if self.loaded else None
            nvml_peak = self.peaks.get("nvml_process")
            # max_memory_allocated() semantics: the largest allocated figure seen,
            # step peaks (transients inside a step) included.
            alloc_peak = max(
                (p for p in (self.peaks.get("allocated"), self.peaks.get("step_peak")) if p),
                key=lambda p: p.value,
                default=None,
            )
            kv_final = next(
                (s.kv_bytes for s in reversed(self.token_samples) if s.kv_bytes is not None), None
            )
            done = self.done
            return {
                "vramtui_summary_version": 1,
                "status": self.status,
                "model": self.spec.get("model"),
                "dtype": self.loaded.dtype if self.loaded else self.spec.get("dtype"),
                "tokens_requested": self.spec.get("tokens"),
                "tokens_generated": len(self.token_samples),
                "tokens_per_s": done.tokens_per_s if done else _rate(self.token_samples),
                "decode_tokens_per_s": done.decode_tokens_per_s if done else None,
                "params": params,
                "weights_bytes": self.loaded.weights_bytes if self.loaded else None,
                "peak_allocated_bytes": alloc_peak.value if alloc_peak else None,
                "peak_reserved_bytes": _value(self.peaks.get("reserved")),
                "peak_nvml_process_bytes": _value(nvml_peak),
                "peak_nvml_device_used_bytes": _value(self.peaks.get("nvml_device_used")),
                "kv_cache_bytes_final": kv_final,
                "bytes_per_param_peak_allocated": _ratio(_value(alloc_peak), params),
                "bytes_per_param_peak_process": _ratio(_value(nvml_peak), params),
                "peaks": peaks,
                "timings": asdict(done) if done else None,
                "failure": asdict(self.failure) if self.failure else None,
                "nvml_samples": self._nvml_seen,
                "nvml_rate_hz": self.nvml_rate_hz,
                "notices": list(self.notices),
                "started_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_wall)
                ),
                "elapsed_s": round(self.elapsed(), 3),
                "spec": dict(self.spec),
                "environment": dict(self.environment),
            }


def _nvml_key(sample: NvmlSample) -> tuple[int, int]:
    return (sample.process_bytes or 0, sample.device_used or 0)


def _value(peak: Peak | None) -> int | None:
    return peak.value if peak else None


def _ratio(value: int | None, params: int | None) -> float | None:
    if value is None or not params:
        return None
    return round(value / params, 4)


def _rate(samples: list[ev.Sample]) -> float | None:
    if len(samples) < 2:
        return None
    span = samples[-1].t - samples[0].t
    return (len(samples) - 1) / span if span > 0 else None
