"""A training run's summary, both ways: `training_section(view)` writes the "training"
section of a session's JSON; `read_training` reads it back typed; `training_events`
gives back the events it was made from (a saved session rebuilt).

The breakdown is the run's peak taken apart at its moment, measured as itself: the
weights, gradients, optimizer states and activations saved for backward are the engine's
counts of those tensors, held or not at that moment as its phase says; the transients
are the rest of the peak, so the parts sum to it; the allocator's slack and the CUDA
context come from the peaks (CUDA only: on the CPU the peak is the process's RSS, whose
rest holds the process's own memory too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.session_view import Peak, SessionView
from vramtui.runspec.train_spec import TRAIN_PHASES, TrainSpec

PROGRAM_RECIPE = "the program's own (vramtui profile)"


@dataclass(frozen=True)
class PhasePeak:
    """The highest allocated figure inside one phase, over every step, and its step."""

    value: int
    step: int


@dataclass(frozen=True)
class TrainBreakdown:
    """What a training run holds at its peak's moment, in bytes; None where it was not
    measured. Every part but the paged states is in the peak's figure."""

    frozen_weights: int | None = None
    trainable_weights: int | None = None
    gradients: int | None = None
    optimizer_states: int | None = None
    optimizer_states_paged: int | None = None  # of those, in CUDA managed memory (paged)
    activations_saved: int | None = None  # saved for backward and still held
    transients: int | None = None  # the rest of the peak: held by no part above
    allocator_slack: int | None = None  # peak reserved - peak allocated
    cuda_context: int | None = None  # NVML process peak - peak reserved


@dataclass(frozen=True)
class TrainingSummary:
    """A training run's summary as the text views read it."""

    recipe: str
    optimizer: str | None
    steps_requested: int
    steps_done: int
    tokens_per_step: int
    tokens_per_s: float | None  # over every step done
    steady_tokens_per_s: float | None  # steps 2 on (step 1 creates the optimizer's states)
    step_s: tuple[float, ...]
    peak: PhasePeak | None
    peak_phase: str | None
    phase_peaks: dict[str, PhasePeak] = field(default_factory=dict)
    breakdown: TrainBreakdown = field(default_factory=TrainBreakdown)


def phase_peaks(steps: tuple[ev.TrainStep, ...]) -> dict[str, PhasePeak]:
    """Each phase's highest peak over the steps, and the (first) step it was reached in."""
    out: dict[str, PhasePeak] = {}
    for s in steps:
        for phase, value in s.phase_peaks.items():
            if value is not None and (phase not in out or value > out[phase].value):
                out[phase] = PhasePeak(value, s.step)
    return out


def run_peak(peaks: dict[str, PhasePeak]) -> tuple[str | None, PhasePeak | None]:
    """The phase (in step order on a tie) and step of the run's highest peak."""
    ordered = [p for p in TRAIN_PHASES if p in peaks] + [p for p in peaks if p not in TRAIN_PHASES]
    best: tuple[str | None, PhasePeak | None] = (None, None)
    for phase in ordered:
        peak = peaks[phase]
        current = best[1]
        if current is None or (peak.value, -peak.step) > (current.value, -current.step):
            best = (phase, peak)
    return best


def moment_parts(phase: str, step: int, run: TrainBreakdown, grad_accum: int) -> TrainBreakdown:
    """What the counted parts hold at the moment `phase` of `step` peaks, so that they and
    the transients sum to the peak. The weights always; the optimizer's states once step
    1's optimizer.step() has made them (paged ones are outside the allocator); in forward
    and backward, every saved activation (forward peaks at its end, backward at its start,
    when all of them are still held) and the gradients of the earlier micro-batches (none
    unless --grad-accum > 1); in optimizer and zero_grad, every gradient and no
    activation."""
    states = None
    if step > 1 or phase in ("optimizer", "zero_grad"):
        states = run.optimizer_states
    carried = phase in ("optimizer", "zero_grad") or grad_accum > 1
    return replace(
        run,
        optimizer_states=states,
        optimizer_states_paged=run.optimizer_states_paged if states is not None else None,
        gradients=run.gradients if carried else 0,
        activations_saved=run.activations_saved if phase in ("forward", "backward") else 0,
    )


def allocated_parts(parts: TrainBreakdown) -> int:
    """The bytes of the counted parts that are in the allocator's figure."""
    return sum(value for _, value in held_parts(parts))


def run_parts(view: SessionView) -> TrainBreakdown:
    """The parts as counted: the weights at load, the gradients, the optimizer's states
    and the activations saved for backward in the steps that counted them (step 1: every
    step runs the same graph on the same shapes)."""
    loaded = view.train_loaded
    counted = [s for s in view.train_steps if s.activation_bytes is not None]
    last = counted[-1] if counted else None
    return TrainBreakdown(
        frozen_weights=loaded.frozen_bytes if loaded else None,
        trainable_weights=loaded.trainable_bytes if loaded else None,
        gradients=max((s.gradient_bytes or 0 for s in counted), default=None),
        optimizer_states=last.optimizer_state_bytes if last else None,
        optimizer_states_paged=(last.paged_state_bytes or None) if last else None,
        activations_saved=max((s.activation_bytes or 0 for s in counted), default=None),
    )


def held_parts(parts: TrainBreakdown) -> list[tuple[str, int]]:
    """The counted parts of a moment (`moment_parts`), as (field of TrainBreakdown,
    bytes), the paged optimizer states left out (they are not in the allocator)."""
    states = (parts.optimizer_states or 0) - (parts.optimizer_states_paged or 0)
    return [
        ("frozen_weights", parts.frozen_weights or 0),
        ("trainable_weights", parts.trainable_weights or 0),
        ("optimizer_states", states),
        ("gradients", parts.gradients or 0),
        ("activations_saved", parts.activations_saved or 0),
    ]


def breakdown(view: SessionView, phase: str | None, peak: PhasePeak | None) -> TrainBreakdown:
    """The parts of the run's peak at its moment: frozen + trainable + gradients +
    optimizer states (less the paged ones) + activations saved + transients = the peak
    (allocated on a GPU; RSS on the CPU, where the transients hold the process's own
    memory too); + allocator slack = reserved; + CUDA context = NVML."""
    parts = run_parts(view)
    if not phase or not peak or not view.train_steps:
        return parts
    spec = view.spec
    grad_accum = spec.grad_accum if isinstance(spec, TrainSpec) else 1
    parts = moment_parts(phase, peak.step, parts, grad_accum)
    parts = replace(parts, transients=peak.value - allocated_parts(parts))
    if view.backend != "cuda":
        return parts
    reserved = _value(view.peaks.get("reserved"))
    allocated = _value(view.peak_allocated())
    nvml = _value(view.peaks.get("nvml_process"))
    return replace(
        parts,
        allocator_slack=reserved - allocated if reserved is not None and allocated else None,
        cuda_context=nvml - reserved if nvml is not None and reserved is not None else None,
    )


def training_section(view: SessionView) -> dict[str, Any] | None:
    """The "training" section of a session's JSON (None for other runs)."""
    spec = view.spec
    steps = view.train_steps
    if not isinstance(spec, TrainSpec) and not steps:
        return None
    peaks = phase_peaks(steps)
    phase, peak = run_peak(peaks)
    times = [s.t_end - s.t_start for s in steps]
    tokens = sum(s.tokens for s in steps)
    steady = sum(times[1:])
    return {
        **_recipe(spec, steps),
        "optimizer": view.train_loaded.optimizer if view.train_loaded else None,
        "steps_done": len(steps),
        "tokens_per_s": tokens / sum(times) if sum(times) > 0 else None,
        "steady_tokens_per_s": sum(s.tokens for s in steps[1:]) / steady if steady > 0 else None,
        "step_s": [round(t, 6) for t in times],
        "peak": {"value": peak.value, "step": peak.step, "phase": phase} if peak else None,
        "phase_peaks": {name: asdict(p) for name, p in peaks.items()},
        "breakdown": {f"{k}_bytes": v for k, v in asdict(breakdown(view, phase, peak)).items()},
        "loaded": asdict(view.train_loaded) if view.train_loaded else None,
        "steps": [_step_entry(view, s) for s in steps],
    }


def _recipe(spec: object, steps: tuple[ev.TrainStep, ...]) -> dict[str, Any]:
    """The recipe as `vramtui train` ran it; a profiled program's is its own (its steps
    as many as it ran, its tokens a step as its first step's forward scored)."""
    if isinstance(spec, TrainSpec):
        return {
            "recipe": spec.recipe(),
            "steps_requested": spec.steps,
            "tokens_per_step": spec.tokens_per_step,
        }
    return {
        "recipe": PROGRAM_RECIPE,
        "steps_requested": len(steps),
        "tokens_per_step": steps[0].tokens if steps else 0,
    }


def _step_entry(view: SessionView, step: ev.TrainStep) -> dict[str, Any]:
    entry = asdict(step)
    entry["t_start_s"] = round(entry.pop("t_start") - view.t0, 6)
    entry["t_end_s"] = round(entry.pop("t_end") - view.t0, 6)
    return entry


def read_training(saved: dict[str, Any] | None) -> TrainingSummary | None:
    """The typed summary of a "training" section (None where there is none)."""
    if not saved:
        return None
    peak = saved.get("peak")
    parts = saved.get("breakdown") or {}
    return TrainingSummary(
        recipe=str(saved.get("recipe") or ""),
        optimizer=saved.get("optimizer"),
        steps_requested=int(saved.get("steps_requested") or 0),
        steps_done=int(saved.get("steps_done") or 0),
        tokens_per_step=int(saved.get("tokens_per_step") or 0),
        tokens_per_s=saved.get("tokens_per_s"),
        steady_tokens_per_s=saved.get("steady_tokens_per_s"),
        step_s=tuple(float(t) for t in saved.get("step_s") or ()),
        peak=PhasePeak(int(peak["value"]), int(peak["step"])) if peak else None,
        peak_phase=str(peak["phase"]) if peak else None,
        phase_peaks={
            name: PhasePeak(int(p["value"]), int(p["step"]))
            for name, p in (saved.get("phase_peaks") or {}).items()
        },
        breakdown=TrainBreakdown(
            **{f.name: parts.get(f"{f.name}_bytes") for f in fields(TrainBreakdown)}
        ),
    )


def _value(peak: Peak | None) -> int | None:
    return peak.value if peak else None
