"""Where a run's start-up time went: Python, imports, CUDA, the build, the first step.

Read from one session's events (all stamped with the same monotonic clock, the
engine's and the parent's alike) and measured from Run: the session's t0, when
the recorder was made. A spare engine's imports happened before Run, so its
`imports_done_s` is negative. Pure Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramtui.measure import events as ev

if TYPE_CHECKING:
    from vramtui.measure.session_view import SessionView

# How the engine was started, as the recorder puts it in the environment.
WARM = "warm spare"
COLD = "cold"
FORKED = "forked"  # from a sweep's fork server (engine/forkserver.py): imported there
FORKED_SPARE = "forked spare"  # forked from it ahead, then handed the spec


def _phase_t(phases: tuple[ev.Phase, ...], name: str) -> float | None:
    return next((p.t for p in phases if p.name == name), None)


def _span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 4) if start is not None and end is not None else None


def startup_timings(view: SessionView) -> dict[str, Any] | None:
    """Seconds for each stage of start-up, None where a stage was not reached; None
    for a session without the engine's Startup event (a replay, an older engine)."""
    up = view.startup
    if up is None:
        return None
    start = _phase_t(view.phases, "start")
    load = _phase_t(view.phases, "load")
    prefill = _phase_t(view.phases, "prefill")
    steps = view.token_samples
    first = steps[0].t if steps else None
    second = steps[1].t if len(steps) > 1 else None
    return {
        "engine": view.environment.engine_start,
        "spawned_s": _span(view.t0, up.spawned),  # negative: started before Run
        "imports_done_s": _span(view.t0, up.imported),
        "python_s": _span(up.spawned, up.started),
        "imports_s": _span(up.started, up.imported),
        "waited_for_run_s": _span(up.imported, up.spec_received),
        "cuda_before_run": up.cuda_initialized,
        "device_init_s": _span(start, load),
        "build_s": round(view.loaded.load_s, 4) if view.loaded else None,
        "first_step_s": _span(prefill, first),
        "first_token_s": _span(view.t0, first),
        "first_decode_token_s": _span(view.t0, second),
    }
