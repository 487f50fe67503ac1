"""How a comparison of runs reads: the peaks and the breakdown at the peak, side by side.

The first session is the base; every other column says how far it is from it, in bytes
and percent. Which sessions and what sets them apart is analysis/run_comparison.py.
"""

from __future__ import annotations

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.analysis.run_comparison import SERIES, Compared, differences, peak_of
from vramtui.measure.session import SessionView
from vramtui.measure.train_summary import breakdown, phase_peaks, run_peak
from vramtui.report.summary_text import series_labels
from vramtui.report.tables import table
from vramtui.report.train_text import BREAKDOWN_ROWS
from vramtui.runspec.train_spec import TRAIN_PHASES, TrainSpec
from vramtui.units import format_bytes


def change(base: int | None, value: int | None) -> str:
    """'+1.20 GB (+12.5 %)' from the base to the value; '–' where either is missing."""
    if base is None or value is None:
        return "–"
    delta = value - base
    sign = "+" if delta >= 0 else "-"
    text = f"{sign}{format_bytes(abs(delta), 2)}"
    if base:
        text += f" ({delta / base * 100:+.1f} %)"
    return text


def _cell(base: int | None, value: int | None, first: bool) -> str:
    if value is None:
        return "–"
    if first:
        return format_bytes(value, 2)
    return f"{format_bytes(value, 2)} {change(base, value)}"


Figures = list[tuple[str, list[int | None]]]  # (row label, one figure per session)


def _rows(values: Figures) -> list[tuple[str, ...]]:
    """One row per label, the first session's figure, then each other's with its change."""
    rows = []
    for label, figures in values:
        if all(v is None for v in figures):
            continue
        base = figures[0]
        rows.append((label, *(_cell(base, v, n == 0) for n, v in enumerate(figures))))
    return rows


def peak_table_rows(items: list[Compared]) -> list[tuple[str, ...]]:
    """(series, first's peak, each other's peak and change) for every series measured."""
    labels = series_labels(items[0].view.backend)
    values: Figures = [(labels[name], [peak_of(c.view, name) for c in items]) for name in SERIES]
    kv = [
        next((s.kv_bytes for s in reversed(c.view.token_samples) if s.kv_bytes is not None), None)
        for c in items
    ]
    values.append(("KV cache at end", kv))
    return _rows(values)


def breakdown_table_rows(items: list[Compared]) -> list[tuple[str, ...]]:
    """The measured breakdown at each session's peak step, component by component."""
    breakdowns = [measured_breakdown(c.view, "peak") for c in items]
    if all(b is None for b in breakdowns):
        return []
    present = next(b for b in breakdowns if b is not None)
    values: Figures = []
    for n, (label, _) in enumerate(present.components()):
        values.append((label, [b.components()[n][1] if b else None for b in breakdowns]))
    values.append(("total", [b.total_bytes if b else None for b in breakdowns]))
    tokens = (str(b.token) if b and b.token is not None else "–" for b in breakdowns)
    return [*_rows(values), ("at token", *tokens)]


def training_table_rows(items: list[Compared]) -> list[tuple[str, ...]]:
    """Training sessions side by side: each phase's peak, where the run's peak was, and the
    parts (weights, gradients, optimizer states, activations, transients, slack, context)
    measured at it; a generation's column stays empty."""
    values: Figures = []
    peaks = [phase_peaks(c.view.train_steps) for c in items]
    for phase in TRAIN_PHASES:
        values.append((f"{phase} peak", [p[phase].value if phase in p else None for p in peaks]))
    tops = [run_peak(p) for p in peaks]
    parts = [breakdown(c.view, *top) for c, top in zip(items, tops, strict=True)]
    for name, label in BREAKDOWN_ROWS:
        values.append((label.strip(), [getattr(p, name) for p in parts]))
    where = (f"{phase}, step {peak.step}" if phase and peak else "–" for phase, peak in tops)
    return [*_rows(values), ("peak in", *where)]


def _what(view: SessionView) -> str:
    """What a session measured, in a word or two: tokens, training steps, peaks only."""
    if isinstance(view.spec, TrainSpec):
        return f"{len(view.train_steps)} training steps"
    return f"{view.tokens_done} tokens" if view.tokens_done else "peaks only"


def compare_text(items: list[Compared]) -> str:
    """The comparison as text: who is who, the peaks, the breakdowns at the peak."""
    header = ("", *(f"[{n + 1}]" for n in range(len(items))))
    keys = ", ".join(differences([c.view for c in items])) or "nothing in their settings"
    lines = [f"Compare — {len(items)} sessions; they differ in: {keys}", ""]
    for n, c in enumerate(items):
        where = f" — {c.path.name}" if c.path else ""
        status = f", {c.view.status}" if c.view.status != "completed" else ""
        lines.append(f"[{n + 1}] {c.label}{where} ({_what(c.view)}{status})")
    lines += ["", "Peaks (change from [1])", table(peak_table_rows(items), header)]
    training = [isinstance(c.view.spec, TrainSpec) for c in items]
    if any(training):
        rows = training_table_rows(items)
        lines += [
            "",
            "Training: each phase's peak, and the parts at the run's peak",
            table(rows, header),
        ]
    if all(training):
        return "\n".join(lines)  # a training step has no token steps to break down
    steps = breakdown_table_rows(items)
    if steps:
        lines += ["", "Breakdown at each run's peak step", table(steps, header)]
    else:
        lines += ["", "No breakdown: no per-step samples (a bench row, or a JSON without its CSV)"]
    return "\n".join(lines)
