"""The out-of-memory forecast of a live run, read from its session.

The growth is fitted on the engine's per-step peaks (exact, one figure per
token, no polling noise) over the whole decode so far (predict/forecast.py).
The headroom is the device's free memory as NVML reports it (or a total given
by the caller, less what the run holds), plus the cache the run's own allocator
holds unused, which it frees and reuses before it runs out. Under --cap the
headroom is no more than the cap less what the allocator holds allocated.
"""

from __future__ import annotations

from vramtui.measure.session import SessionView
from vramtui.predict.fit_forecast import MAX_POINTS, OomForecast, forecast, spread
from vramtui.runspec.program_spec import tokens_requested

SERIES = ("step_peak", "allocated", "nvml_process")  # preferred first

__all__ = ["OomForecast", "forecast_oom", "headroom"]


def headroom(view: SessionView, device_total: int | None = None) -> int | None:
    """Bytes the run can still grow into: the device's free memory (NVML's total - used,
    else a total less the run's own use), plus what the run's allocator holds unused
    (reserved - allocated). That cache can be most of the process: a KV cache that
    balloons (predict/kv_replay.py) fills the GPU with segments it never reuses, and
    the run still completes."""
    room = device_room(view, device_total)
    cap = cap_of(view)
    if cap is None:
        return room
    # --cap: the allocator may reserve no more than the cap, its unused cache included
    allocated = view.latest("allocated")
    cap_room = cap - allocated if allocated is not None else None
    rooms = [r for r in (room, cap_room) if r is not None]
    return min(rooms) if rooms else None


def cap_of(view: SessionView) -> int | None:
    """The run's --cap in bytes (runspec/cap.py), None without one."""
    return getattr(view.spec, "cap_bytes", None)  # a program's spec has none


def device_room(view: SessionView, device_total: int | None = None) -> int | None:
    """The device's share of `headroom`: free memory plus the run's unused cache."""
    used = view.latest("nvml_device_used")
    total = device_total or view.device_total()
    if not total:
        return None
    if used is None:
        own = view.latest("nvml_process") or view.latest("reserved") or view.latest("allocated")
        if own is None:
            return None
        used = own
    reserved, allocated = view.latest("reserved"), view.latest("allocated")
    cached = max(0, reserved - allocated) if reserved is not None and allocated is not None else 0
    return total - used + cached


def forecast_oom(
    view: SessionView,
    *,
    device_total: int | None = None,
    max_points: int = MAX_POINTS,
) -> OomForecast | None:
    """Where this run would run out of device memory, from its growth so far.

    None until two decode steps are measured, or when no device total is known.
    """
    room = headroom(view, device_total)
    if room is None:
        return None
    for name in SERIES:
        # The prefill (token 0) is no guide to decode growth; leave it out.
        points = spread([(t, v) for t, v in view.token_series(name) if t >= 1], max_points)
        if len(points) >= 2:
            break
    else:
        return None
    loaded = view.loaded
    last = loaded.positions - loaded.prompt_tokens - 1 if loaded and loaded.positions else None
    requested = tokens_requested(view.spec)
    return forecast(points, room, requested=requested, last_token=last, basis=name)
