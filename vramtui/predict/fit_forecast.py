"""Will it fit? Where a growing run runs out, and whether a planned run fits.

Pure. `forecast()` extrapolates a run's growth per token, fitted robustly on
(token, bytes) points: memory grows in allocator-sized steps with flat
stretches of a hundred tokens or more between them, so a recent window alone
can read ~0 growth in a run that is steadily filling its KV cache. `fit_check()`
holds a prediction against a device's free memory, `cap_check()` against a --cap.
They return facts; the sentences are the screens' (tui/prediction.py,
commands/estimate.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Architecture, Estimate, estimate
from vramtui.runspec import ResolvedRun

MAX_POINTS = 512  # decode steps the growth is fitted on, evenly spread over the run


@dataclass(frozen=True)
class OomForecast:
    token: int | None  # first token whose step would not fit; None: none within the positions
    bytes_per_token: float
    headroom_bytes: int
    fits: bool  # this run's requested tokens complete before running out
    basis: str = "step_peak"  # the series the growth was fitted on
    current_token: int | None = None


def growth_per_token(points: list[tuple[int, int]]) -> float | None:
    """Bytes per token over (token, bytes) points, robust to spikes and steps.

    The median of slopes between points half the window apart (a lagged
    Theil-Sen): allocator segments and NVML readings grow in steps, and a
    single step's spike moves no median.
    """
    if len(points) < 2:
        return None
    lag = max(1, len(points) // 2)
    slopes = [
        (points[j + lag][1] - points[j][1]) / (points[j + lag][0] - points[j][0])
        for j in range(len(points) - lag)
        if points[j + lag][0] != points[j][0]
    ]
    return median(slopes) if slopes else None


def spread(points: list[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` of the points, evenly spaced, the newest always among them."""
    if len(points) <= most:
        return points
    step = len(points) / most
    picked = [points[int(k * step)] for k in range(most - 1)]
    return picked + [points[-1]]


def forecast(
    points: list[tuple[int, int]],
    headroom: int,
    *,
    requested: int,
    last_token: int | None,
    basis: str = "step_peak",
) -> OomForecast | None:
    """Where a run growing like `points` (decode steps) runs out of `headroom` bytes.

    `token` is None when it will not run out before `last_token` (the model's last
    position); `fits` says whether the run's `requested` tokens complete.
    """
    slope = growth_per_token(points)
    if slope is None:
        return None
    current = points[-1][0]
    token: int | None = None
    if slope > 0:
        steps = max(1, math.floor(max(headroom, 0) / slope) + 1)
        token = current + steps
        if last_token is not None and token > last_token:
            token = None
    fits = token is None or token >= requested
    return OomForecast(token, slope, headroom, fits, basis, current)


@dataclass(frozen=True)
class FitCheck:
    """A prediction held against the memory free on a device."""

    fits: bool
    need_bytes: int  # what must fit (a ballooning cache is freed before an OOM)
    free_bytes: int
    most_tokens: int | None = None  # where it does not fit: the most new tokens that do
    weights_fit: bool = True  # whether the weights (and the context) alone fit

    @property
    def spare_bytes(self) -> int:
        return self.free_bytes - self.need_bytes


def fit_check(est: Estimate, free_bytes: int, *, overhead_bytes: int = 0) -> FitCheck:
    """Does the run fit `free_bytes`? `overhead_bytes`: what the process needs besides
    the prediction (on the CPU, the Python process itself)."""
    need = est.required_bytes + overhead_bytes
    if need <= free_bytes:
        return FitCheck(True, need, free_bytes)
    room = free_bytes - overhead_bytes
    most = max_tokens_that_fit(est.model, room, **est.run_kwargs()) if room > 0 else 0
    weights = est.weights_bytes + est.context_bytes + overhead_bytes
    return FitCheck(False, need, free_bytes, most, weights <= free_bytes)


def cap_check(est: Estimate, cap_bytes: int) -> FitCheck:
    """Does the run fit under --cap? The cap holds torch's caching allocator, so what is
    held against it is the predicted peak reserved (less a ballooning cache, freed before
    an out-of-memory, as in `fit_check`); the CUDA context is outside the cap."""
    need = est.required_bytes - est.context_bytes
    if need <= cap_bytes:
        return FitCheck(True, need, cap_bytes)
    # required_bytes is the reserved need plus the context: the same tokens fit the cap
    # as fit the cap plus the context
    most = max_tokens_that_fit(est.model, cap_bytes + est.context_bytes, **est.run_kwargs())
    return FitCheck(False, need, cap_bytes, most, est.weights_bytes <= cap_bytes)


def ram_fit(run: ResolvedRun, est: Estimate | None) -> FitCheck | None:
    """A CPU run's predicted peak RSS (its tensors and the Python process) against the RAM
    available; None off the CPU, without an estimate, or where the RAM is not known."""
    choice = run.device_choice
    if est is None or run.backend != "cpu" or choice is None or not choice.free:
        return None
    return fit_check(est, choice.free, overhead_bytes=cpu_process().bytes)


def max_tokens_that_fit(model: Architecture, memory_bytes: int, **shape: Any) -> int:
    """The largest number of new tokens whose predicted need (`required_bytes`: the
    peak total less any ballooning cache, which is freed before an OOM) fits
    `memory_bytes`. `shape`: estimate's keywords but `tokens` (see `run_kwargs`).

    0 when not even one token fits (the weights, or the prefill, are too large);
    never more than the model's positions allow after the prompt (the caller can
    tell that case: the answer is then `model.positions - prompt_tokens`).
    """
    cap = model.positions - shape.get("prompt_tokens", 8)

    def fits(n: int) -> bool:
        e = estimate(model, tokens=n, **shape)
        return e.required_bytes <= memory_bytes

    if cap <= 0 or not fits(1):
        return 0
    lo, hi = 1, cap  # fits(lo) holds; the peak grows with the number of tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
