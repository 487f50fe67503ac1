"""One device's NVML readings, kept bounded, and each token's largest reading.

Pure data, written under the session's lock. Past `cap` stored readings the stream is
thinned: one reading in `decimation` is stored, the largest of its window, so a spike
between stored readings is never dropped. A placed model's session keeps one stream per
GPU it polls (measure/session.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from vramtui.measure.session_view import NvmlSample


def nvml_key(sample: NvmlSample) -> tuple[int, int]:
    return (sample.process_bytes or 0, sample.device_used or 0)


class NvmlStream:
    """Readings of one GPU: stored (thinned past `cap`) and folded into tokens."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stored: list[NvmlSample] = []
        self.seen = 0
        self.decimation = 1
        self.window: NvmlSample | None = None  # largest reading of the open window
        self.waiting: list[NvmlSample] = []  # readings after the newest token sample
        self.token_max: dict[int, int] = {}  # token -> largest process reading in its step

    def samples(self) -> tuple[NvmlSample, ...]:
        """What is stored, and the open window's largest reading."""
        out = tuple(self.stored)
        return out + (self.window,) if self.window is not None else out

    def add(self, sample: NvmlSample) -> None:
        self.seen += 1
        window = self.window
        if window is None or nvml_key(sample) > nvml_key(window):
            self.window = window = sample
        if self.seen % self.decimation:
            return
        self.stored.append(window)
        self.window = None
        if len(self.stored) >= self.cap:
            self._thin()

    def _thin(self) -> None:
        """Halve the stored readings, keeping the larger of each pair."""
        stored = self.stored
        kept = [max(stored[i], stored[i + 1], key=nvml_key) for i in range(0, len(stored) - 1, 2)]
        if len(stored) % 2:
            kept.append(stored[-1])
        self.stored = kept
        self.decimation *= 2

    def fold(
        self, sample: NvmlSample, token_times: list[float], in_step: Callable[[float], bool]
    ) -> None:
        """The largest process reading during each token's step: a reading belongs to
        the first token sampled at or after it; `in_step(t)` says whether a step runs."""
        if sample.process_bytes is None:
            return
        if not token_times or sample.t > token_times[-1]:
            self.waiting.append(sample)  # its token is not sampled yet
            return
        self.assign(bisect_left(token_times, sample.t), sample, in_step)

    def token_sampled(self, token: int, t: float, in_step: Callable[[float], bool]) -> None:
        """A token's sample came at `t`: the readings waiting up to it are its."""
        if not self.waiting:
            return
        mine = [s for s in self.waiting if s.t <= t]
        self.waiting = [s for s in self.waiting if s.t > t]
        for reading in mine:
            self.assign(token, reading, in_step)

    def assign(self, token: int, sample: NvmlSample, in_step: Callable[[float], bool]) -> None:
        if not in_step(sample.t):
            return  # before the first step, or between a program's generate() calls
        best, value = self.token_max.get(token), sample.process_bytes
        if value is not None and (best is None or value > best):
            self.token_max[token] = value

    def end(self) -> None:
        """The run has ended: store the open window; waiting readings have no token."""
        if self.window is not None:
            self.stored.append(self.window)
            self.window = None
        self.waiting.clear()

    def rate_hz(self) -> float | None:
        if len(self.stored) > 1:
            span = self.stored[-1].t - self.stored[0].t
            if span > 0:
                return (self.seen - 1) / span
        return None
