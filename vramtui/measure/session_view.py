"""A frozen view of a Session at one moment: what every reader reads.

Pure data. Built by `Session.snapshot()` under the session's lock, never
changed afterwards, so a screen, an exporter or the breakdown can iterate it
while the engine's thread goes on appending to the session.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.runspec.program_spec import SessionSpec
from vramtui.runspec.train_spec import TRAIN_PHASES

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
# Peak-tracked series and where each comes from.
ENGINE_SERIES = ("allocated", "reserved", "step_peak")
NVML_SERIES = ("nvml_process", "nvml_device_used")
_NVML_ATTR = {"nvml_process": "process_bytes", "nvml_device_used": "device_used"}


@dataclass(frozen=True)
class NvmlSample:
    t: float
    process_bytes: int | None
    device_used: int | None
    device_total: int | None


@dataclass(frozen=True)
class DeviceNvml:
    """An NVML reading of another GPU a placed model uses (replays, saved sessions)."""

    device: str
    sample: NvmlSample

    @property
    def t(self) -> float:
        return self.sample.t


@dataclass(frozen=True)
class Peak:
    value: int
    token: int | None
    phase: str
    t: float


def step_phase(sample: ev.Sample) -> str:
    """The phase a measurement belongs to: token 0's step is the prefill forward."""
    return "prefill" if sample.token == 0 else sample.phase


def phase_at(phases: Sequence[ev.Phase], phase_times: Sequence[float], t: float) -> str:
    """The phase running at time t ('start' before the first)."""
    i = bisect_right(phase_times, t)
    return phases[i - 1].name if i else "start"


def token_at(
    phases: Sequence[ev.Phase], phase_times: Sequence[float], token_times: Sequence[float], t: float
) -> int | None:
    """The token whose step was running at time t (None outside generation): the first
    token sampled at or after t; token 0's step is the prefill."""
    phase = phase_at(phases, phase_times, t)
    if phase not in ("prefill", "decode"):
        return None  # loading, or a profiled program between its generate() calls
    i = bisect_left(token_times, t)
    if not token_times or (i == 0 and phase != "prefill"):
        return 0 if phase == "prefill" else None
    if i >= len(token_times):  # the step in progress (a program's later call: its prefill)
        return len(token_times)
    return i


@dataclass(frozen=True)
class SessionView:
    """Everything a session holds at one moment; nothing in it changes."""

    spec: SessionSpec
    environment: Environment
    t0: float
    started_wall: float
    status: str
    hello: ev.Hello | None
    loaded: ev.Loaded | None
    done: ev.Done | None
    failure: ev.Failed | None
    samples: tuple[ev.Sample, ...]
    token_samples: tuple[ev.Sample, ...]
    phases: tuple[ev.Phase, ...]
    notices: tuple[str, ...]
    peaks: dict[str, Peak]
    nvml: tuple[NvmlSample, ...]
    nvml_seen: int
    nvml_token_max: dict[int, int]  # token -> largest NVML process reading in its step
    nvml_rate_hz: float | None
    ended_at: float | None
    generations: tuple[ev.Generation, ...] = ()  # a profiled program's generate() calls
    startup: ev.Startup | None = None  # when the engine process got where, before the run
    allocation_snapshot: ev.AllocationSnapshot | None = None  # --snapshot
    placed: ev.Placed | None = None  # a model placed across devices by a device map
    # a placed model's devices: series -> peak (engine series; NVML for its other GPUs)
    device_peaks: dict[str, dict[str, Peak]] = field(default_factory=dict)
    device_nvml: dict[str, tuple[NvmlSample, ...]] = field(default_factory=dict)  # other GPUs
    device_nvml_token_max: dict[str, dict[int, int]] = field(default_factory=dict)
    train_loaded: ev.TrainLoaded | None = None  # a training run's model, ready to train
    train_steps: tuple[ev.TrainStep, ...] = ()  # a training run's optimizer steps, in order

    # ---- state -------------------------------------------------------------------
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

    @property
    def backend(self) -> str | None:
        return self.hello.backend if self.hello is not None else None

    def elapsed(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now or time.monotonic())
        return max(0.0, end - self.t0)

    def live_tokens_per_s(self, window: int = 50) -> float | None:
        """Decode rate over the last `window` tokens."""
        return tokens_rate(self.token_samples[-window - 1 :])

    # ---- series ------------------------------------------------------------------
    def token_series(self, name: str) -> list[tuple[int, int]]:
        """(token, bytes) for one series over the generated tokens.

        Engine series come straight from the samples; `nvml_process` is the
        largest NVML reading during each token's step, carried forward across
        steps shorter than the poll interval.
        """
        engine = name in ENGINE_SERIES or name == "kv_bytes"
        if not engine and name != "nvml_process":
            raise KeyError(name)
        out: list[tuple[int, int]] = []
        last: int | None = None
        for s in self.token_samples:
            if s.token is None:
                continue
            if engine:
                value = _reading(s, name)
            else:
                value = last = self.nvml_token_max.get(s.token, last)
            if value is not None:
                out.append((s.token, value))
        return out

    def time_series(self, name: str) -> list[tuple[float, int]]:
        """(seconds since start, bytes) for one series."""
        if name in ENGINE_SERIES or name == "kv_bytes":
            engine = ((s.t - self.t0, _reading(s, name)) for s in self.samples)
            return [(t, v) for t, v in engine if v is not None]
        attr = _NVML_ATTR[name]
        nvml = ((s.t - self.t0, _reading(s, attr)) for s in self.nvml)
        return [(t, v) for t, v in nvml if v is not None]

    def latest(self, name: str) -> int | None:
        if name in ENGINE_SERIES or name == "kv_bytes":
            readings = [_reading(s, name) for s in self.samples[-4:]]
        else:
            readings = [_reading(n, _NVML_ATTR[name]) for n in self.nvml[-4:]]
        return next((v for v in reversed(readings) if v is not None), None)

    def device_total(self) -> int | None:
        for s in reversed(self.nvml[-4:]):
            if s.device_total:
                return s.device_total
        return self.hello.total_memory if self.hello else None

    # ---- where a moment falls ----------------------------------------------------
    @cached_property
    def _token_times(self) -> list[float]:
        return [s.t for s in self.token_samples]

    @cached_property
    def _phase_times(self) -> list[float]:
        return [p.t for p in self.phases]

    def phase_at(self, t: float) -> str:
        return phase_at(self.phases, self._phase_times, t)

    def token_at(self, t: float) -> int | None:
        return token_at(self.phases, self._phase_times, self._token_times, t)

    def generation_of(self, token: int | None, t: float) -> int | None:
        """The generate() call a sample belongs to (by its token, else its time);
        None outside them, and in sessions that record none."""
        for g in self.generations:
            inside = (
                g.first_token <= token < g.first_token + g.steps
                if token is not None
                else g.t_start <= t <= g.t_end
            )
            if inside:
                return g.index
        return None

    def train_step_at(self, t: float) -> int | None:
        """The training step (from 1) running at time t: the first told step that ends
        at or after t, else the one in progress; None outside a training step's phases."""
        if self.phase_at(t) not in TRAIN_PHASES:
            return None
        i = bisect_left([s.t_end for s in self.train_steps], t)
        return self.train_steps[i].step if i < len(self.train_steps) else len(self.train_steps) + 1

    def nvml_rows(self, device: str | None = None) -> list[tuple[NvmlSample, int | None, str]]:
        """Every stored NVML sample (of the run's own GPU, or of another `device` of a
        placed model) with its token and phase, for export."""
        stored = self.nvml if device is None else self.device_nvml.get(device, ())
        return [(s, self.token_at(s.t), self.phase_at(s.t)) for s in stored]

    # ---- the summary -------------------------------------------------------------
    def peak_allocated(self) -> Peak | None:
        """max_memory_allocated() semantics: the largest allocated figure seen, step
        peaks (transients inside a step) included."""
        found = [p for p in (self.peaks.get("allocated"), self.peaks.get("step_peak")) if p]
        return max(found, key=lambda p: p.value, default=None)


def _reading(record: ev.Sample | NvmlSample, name: str) -> int | None:
    """One series' figure in a sample (None where it was not read)."""
    value: int | None = getattr(record, name)
    return value


def tokens_rate(samples: Sequence[ev.Sample]) -> float | None:
    """Tokens a second between the first and the last of `samples`."""
    if len(samples) < 2:
        return None
    span = samples[-1].t - samples[0].t
    return (len(samples) - 1) / span if span > 0 else None
