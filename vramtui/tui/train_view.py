"""A training session as the app shows it, without Textual: memory on a step axis (a
sample's x is its step, plus how far into that step it was taken), the phase lines, the
status line counting steps, and the breakdown held at the peak so far.

Step k runs from x = k - 1 to x = k. A step told (its TrainStep) has its own start and
end; the step in progress is measured against the length of the last step told (the
steady one), or against itself while it is the first.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vramtui.measure.session_view import SessionView
from vramtui.measure.train_summary import breakdown, held_parts, phase_peaks, run_peak
from vramtui.runspec.train_spec import TRAIN_PHASES, TrainSpec

# The phase lines' labels on the step axis.
PHASE_MARKS = {"forward": "fwd", "backward": "bwd", "optimizer": "opt", "zero_grad": "zero"}
# The breakdown's rows, by TrainBreakdown field, bottom of the stack first.
PART_LABELS = {
    "frozen_weights": "frozen weights",
    "trainable_weights": "trainable weights",
    "optimizer_states": "optimizer states",
    "gradients": "gradients",
    "activations_saved": "activations saved",
    "transients": "transient",
    "allocator_slack": "allocator slack",
    "cuda_context": "context & other",
}


@dataclass(frozen=True)
class StepWindow:
    step: int
    t_start: float
    length: float  # seconds the step took (told), or is taken to take (in progress)
    told: bool = True  # its TrainStep is in: it ended at t_start + length


def step_windows(view: SessionView) -> list[StepWindow]:
    """Each step told, and the step in progress (from its first phase line on)."""
    windows = [StepWindow(s.step, s.t_start, s.t_end - s.t_start) for s in view.train_steps]
    told_end = view.train_steps[-1].t_end if view.train_steps else None
    spec = view.spec
    # a profiled program's steps: as many as it runs, so the one in progress shows too
    if isinstance(spec, TrainSpec) and len(windows) >= spec.steps:
        return windows
    begun = [
        p.t for p in view.phases if p.name in TRAIN_PHASES and (told_end is None or p.t >= told_end)
    ]
    if not begun:
        return windows
    start = begun[0] if told_end is None else max(told_end, begun[0])
    latest = view.samples[-1].t if view.samples else start
    length = windows[-1].length if windows else latest - start
    return [*windows, StepWindow(len(windows) + 1, start, max(length, 1e-9), told=False)]


def step_x(windows: Sequence[StepWindow], starts: Sequence[float], t: float) -> float | None:
    """Where time t falls on the step axis; None outside the steps (loading, after the last
    step told). A moment past the length the step in progress is taken to have (it runs
    long) is held just inside that step."""
    i = bisect_right(starts, t) - 1
    if i < 0:
        return None
    w = windows[i]
    if w.told and t > w.t_start + w.length:
        return None
    return w.step - 1 + min(max((t - w.t_start) / w.length, 0.0), 0.999)


def step_series(view: SessionView, name: str) -> list[tuple[float, int]]:
    """(step axis x, bytes) of one series over the training steps: each step's readings
    cut out of the series by time (it is in time order), then placed inside the step."""
    points = view.time_series(name)
    times = [t for t, _ in points]
    out: list[tuple[float, int]] = []
    for w in step_windows(view):
        start = w.t_start - view.t0
        lo = bisect_left(times, start)
        base, scale = w.step - 1, 1.0 / w.length
        if w.told:  # every reading before its end: inside the step
            hi = bisect_left(times, start + w.length)
            out += [(base + (t - start) * scale, v) for t, v in points[lo:hi]]
        else:  # the step in progress may run past the length it is taken to have
            out += [(base + min((t - start) * scale, 0.999), v) for t, v in points[lo:]]
    return out


def step_marks(view: SessionView) -> tuple[tuple[float, str], ...]:
    """A line at each phase's start, labelled fwd / bwd / opt / zero."""
    windows = step_windows(view)
    starts = [w.t_start for w in windows]
    marks = []
    for p in view.phases:
        x = step_x(windows, starts, p.t) if p.name in PHASE_MARKS else None
        if x is not None:
            marks.append((x, PHASE_MARKS[p.name]))
    return tuple(marks)


def steps_axis_end(view: SessionView) -> float:
    spec = view.spec
    if isinstance(spec, TrainSpec):
        return float(max(spec.steps, len(view.train_steps), 1))
    return float(max(len(step_windows(view)), 1))  # a program's: the steps so far


# ---- the prediction ----------------------------------------------------------------------
class TrainPrediction(Protocol):
    """What the screen shows of a training estimate (predict/training's TrainingEstimate
    has these): the steady step's peak allocated, its phase, and each phase's peak."""

    @property
    def peak_allocated_bytes(self) -> int: ...

    @property
    def peak_phase(self) -> str: ...

    @property
    def phase_peaks(self) -> dict[str, int]: ...


def predicted_steps(prediction: TrainPrediction, steps: int) -> list[tuple[int, int]]:
    """The predicted peak allocated as a line across the step axis."""
    return [(0, prediction.peak_allocated_bytes), (steps, prediction.peak_allocated_bytes)]


# ---- the status line ---------------------------------------------------------------------
def train_rate(view: SessionView) -> float | None:
    """Tokens a second: from step 2 on where there is one (step 1 creates the optimizer's
    states), else over step 1."""
    steps = view.train_steps[1:] or view.train_steps
    span = sum(s.t_end - s.t_start for s in steps)
    return sum(s.tokens for s in steps) / span if span > 0 else None


def train_eta(view: SessionView, requested: int) -> float | None:
    steps = view.train_steps[1:] or view.train_steps
    if not steps:
        return None
    each = sum(s.t_end - s.t_start for s in steps) / len(steps)
    return each * max(requested - len(view.train_steps), 0)


# ---- the breakdown -----------------------------------------------------------------------
@dataclass(frozen=True)
class TrainShown:
    """What the breakdown panel shows for a training session."""

    title: str
    rows: list[tuple[str, int]]
    total: tuple[str, int] | None


def train_breakdown(view: SessionView) -> TrainShown:
    """The parts held at the highest peak so far (which phase of which step), measured as
    themselves; on CUDA the transients, the allocator's slack and the context on top, so
    the rows add up to NVML's figure. Before a step is told: the weights as loaded."""
    phase, peak = run_peak(phase_peaks(view.train_steps))
    parts = breakdown(view, phase, peak)
    if phase is None or peak is None:
        loaded = view.train_loaded
        if loaded is None:
            return TrainShown("where the bytes are", [], None)
        rows = [
            ("frozen weights", loaded.frozen_bytes),
            ("trainable weights", loaded.trainable_bytes),
        ]
        return TrainShown("where the bytes are · loaded", rows, None)
    named = held_parts(parts)
    named += [
        (name, value)
        for name in ("transients", "allocator_slack", "cuda_context")
        if (value := getattr(parts, name)) is not None
    ]
    rows = [(PART_LABELS[name], value) for name, value in named if value > 0]
    title = f"at the peak: {phase}, step {peak.step}"
    nvml = view.peaks.get("nvml_process")
    if view.backend != "cuda":
        return TrainShown(title, rows, ("RSS peak", peak.value))
    if nvml is not None and parts.cuda_context is not None:
        return TrainShown(title, rows, ("NVML process", nvml.value))
    return TrainShown(title, rows, ("allocated peak", peak.value))
