"""Will it fit? The out-of-memory forecast of a live run, and the start screen's check.

Pure. The forecast fits the growth per token on the engine's per-step peaks
(exact, one figure per token, no polling noise) over the whole decode so far:
memory grows in allocator-sized steps with flat stretches of a hundred tokens
or more between them, so a recent window alone can read ~0 growth in a run
that is steadily filling its KV cache. The headroom is the device's
free memory as NVML reports it (or a total given by the caller, less what the
run holds). Usage grows by `bytes_per_token` each step, so the first token
whose growth exceeds the headroom is where this run would run out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

from vramtui.estimator import Estimate, max_tokens_that_fit
from vramtui.session import Session
from vramtui.units import format_bytes

MAX_POINTS = 512  # decode steps the growth is fitted on, evenly spread over the run
SERIES = ("step_peak", "allocated", "nvml_process")  # preferred first


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


def _headroom(session: Session, device_total: int | None) -> int | None:
    """Bytes the run can still grow into: the device's free memory (NVML's total - used,
    else a total less the run's own use), plus what the run's allocator holds unused
    (reserved - allocated), which it frees and reuses before it runs out. That cache
    can be most of the process: a KV cache that balloons (estimator.py) fills the GPU
    with segments it never reuses, and the run still completes."""
    used = session.latest("nvml_device_used")
    total = device_total or session.device_total()
    if not total:
        return None
    if used is None:
        own = (
            session.latest("nvml_process")
            or session.latest("reserved")
            or session.latest("allocated")
        )
        if own is None:
            return None
        used = own
    reserved, allocated = session.latest("reserved"), session.latest("allocated")
    cached = max(0, reserved - allocated) if reserved is not None and allocated is not None else 0
    return total - used + cached


def _spread(points: list[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` of the points, evenly spaced, the newest always among them."""
    if len(points) <= most:
        return points
    step = len(points) / most
    picked = [points[int(k * step)] for k in range(most - 1)]
    return picked + [points[-1]]


def forecast_oom(
    session: Session, *, device_total: int | None = None, max_points: int = MAX_POINTS
) -> OomForecast | None:
    """Where this run would run out of device memory, from its growth so far.

    None until two decode steps are measured, or when no device total is known.
    `token` is None when the memory will not run out before the model's last
    position; `fits` says whether the run's own budget of tokens completes.
    """
    headroom = _headroom(session, device_total)
    if headroom is None:
        return None
    for name in SERIES:
        # The prefill (token 0) is no guide to decode growth; leave it out.
        points = _spread([(t, v) for t, v in session.token_series(name) if t >= 1], max_points)
        if len(points) >= 2:
            break
    else:
        return None
    slope = growth_per_token(points)
    if slope is None:
        return None
    current = points[-1][0]
    requested = int(session.spec.get("tokens") or 0)
    loaded = session.loaded
    last = loaded.positions - loaded.prompt_tokens - 1 if loaded and loaded.positions else None
    token: int | None = None
    if slope > 0:
        steps = max(1, math.floor(max(headroom, 0) / slope) + 1)
        token = current + steps
        if last is not None and token > last:
            token = None
    fits = token is None or token >= requested
    return OomForecast(token, slope, headroom, fits, name, current)


def start_screen_fit(
    est: Estimate, device_total_bytes: int, device_used_bytes: int
) -> tuple[bool, str]:
    """Does the run fit the device's free memory, and a line that says so."""
    free = device_total_bytes - device_used_bytes
    need = est.required_bytes  # a ballooning cache is freed before an OOM
    if need <= free:
        return True, (
            f"fits: needs {format_bytes(need)} of {format_bytes(free)} free "
            f"({format_bytes(free - need)} to spare)"
        )
    short = (
        f"needs {format_bytes(need)}, {format_bytes(free)} free ({format_bytes(need - free)} short)"
    )
    most = max_tokens_that_fit(est.model, free, **est.run_kwargs())
    if most:
        return False, f"won't fit: {short}; at most {most} new tokens fit"
    if est.weights_bytes + est.context_bytes > free:
        return False, f"won't fit: {short}; not even the weights fit"
    return False, f"won't fit: {short}; not even one new token fits"
