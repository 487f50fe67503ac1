"""How a comparison of runs reads: the peaks and the breakdown at the peak, side by side.

The first session is the base; every other column says how far it is from it, in bytes
and percent. Which sessions and what sets them apart is analysis/run_comparison.py.
"""

from __future__ import annotations

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.analysis.run_comparison import SERIES, Compared, differences, peak_of
from vramtui.report.summary_text import series_labels
from vramtui.report.tables import table
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


def compare_text(items: list[Compared]) -> str:
    """The comparison as text: who is who, the peaks, the breakdowns at the peak."""
    header = ("", *(f"[{n + 1}]" for n in range(len(items))))
    keys = ", ".join(differences([c.view for c in items])) or "nothing in their settings"
    lines = [f"Compare — {len(items)} sessions; they differ in: {keys}", ""]
    for n, c in enumerate(items):
        where = f" — {c.path.name}" if c.path else ""
        status = f", {c.view.status}" if c.view.status != "completed" else ""
        tokens = f"{c.view.tokens_done} tokens" if c.view.tokens_done else "peaks only"
        lines.append(f"[{n + 1}] {c.label}{where} ({tokens}{status})")
    lines += ["", "Peaks (change from [1])", table(peak_table_rows(items), header)]
    breakdown = breakdown_table_rows(items)
    if breakdown:
        lines += ["", "Breakdown at each run's peak step", table(breakdown, header)]
    else:
        lines += ["", "No breakdown: no per-step samples (a bench row, or a JSON without its CSV)"]
    return "\n".join(lines)
