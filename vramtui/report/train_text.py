"""A training run's part of the text summary: the recipe as run, each phase's peak and
the step it was reached in, which phase of which step set the run's peak and why, the
breakdown, steps and tokens/s."""

from __future__ import annotations

from vramtui.measure.train_summary import TrainBreakdown, TrainingSummary
from vramtui.report.tables import table
from vramtui.runspec.train_spec import TRAIN_PHASES
from vramtui.units import format_bytes

# What holds the memory in each phase: the reason its peak is where it is.
PHASE_REASON = {
    "forward": "activations saved for backward pile up layer by layer",
    "backward": "every saved activation is still held as backward starts, beside the "
    "loss's gradients and autograd's temporaries",
    "optimizer": "the optimizer's states (made in step 1) beside every gradient",
    "zero_grad": "gradients are let go",
}
BREAKDOWN_ROWS = (
    ("frozen_weights", "frozen weights"),
    ("trainable_weights", "trainable weights"),
    ("gradients", "gradients"),
    ("optimizer_states", "optimizer states"),
    ("optimizer_states_paged", "  of which paged (CUDA managed memory)"),
    ("activations_saved", "activations saved for backward"),
    ("transients", "transients (rest of the peak)"),
    ("allocator_slack", "allocator slack (reserved - allocated)"),
    ("cuda_context", "CUDA context (NVML - reserved)"),
)


def peak_line(training: TrainingSummary) -> str:
    peak, phase = training.peak, training.peak_phase
    if peak is None or phase is None:
        return "peak: no step finished"
    why = PHASE_REASON.get(phase, "")
    return f"peak {format_bytes(peak.value, 2)} in {phase} of step {peak.step}: {why}"


def phase_rows(training: TrainingSummary) -> list[tuple[str, str, str]]:
    peaks = training.phase_peaks
    names = [p for p in TRAIN_PHASES if p in peaks]
    return [(name, format_bytes(peaks[name].value, 2), str(peaks[name].step)) for name in names]


def breakdown_rows(parts: TrainBreakdown) -> list[tuple[str, str]]:
    return [
        (label, format_bytes(getattr(parts, name), 2))
        for name, label in BREAKDOWN_ROWS
        if getattr(parts, name) is not None
    ]


def rate_text(training: TrainingSummary) -> str:
    steady = training.steady_tokens_per_s
    overall = training.tokens_per_s
    if steady is not None:
        return f"{steady:.1f} tok/s from step 2 ({overall or 0:.1f} over every step)"
    return f"{overall:.1f} tok/s" if overall is not None else "–"


def training_text(training: TrainingSummary) -> str:
    facts = [
        ("recipe", training.recipe),
        ("optimizer", training.optimizer or "–"),
        ("steps", f"{training.steps_done}/{training.steps_requested}"),
        ("tokens/step", str(training.tokens_per_step)),
        ("speed", rate_text(training)),
    ]
    if training.step_s:
        facts.append(("step time", ", ".join(f"{t:.3f} s" for t in training.step_s)))
    parts = ["Training", table(facts), "", peak_line(training)]
    rows = phase_rows(training)
    if rows:
        parts += ["", table(rows, ("phase", "peak", "step"))]
    parts_rows = breakdown_rows(training.breakdown)
    if parts_rows:
        parts += ["", table(parts_rows, ("held at the peak", "bytes"))]
    return "\n".join(parts)
