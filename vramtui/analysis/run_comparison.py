"""Two or more runs side by side: each series' peak, the breakdown at the peak, the change.

Pure: reads SessionViews (saved sessions read back by report.saved). The first session
is the base; every other column says how far it is from it, in bytes and percent.
Each session is named by what sets it apart from the others (attn=eager, batch=8,
torch 2.11...), so a table of two runs that differ in one choice says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.measure.session import SessionView
from vramtui.report.summary_text import series_labels
from vramtui.report.tables import table
from vramtui.units import format_bytes

# The series a comparison lines up, in this order.
SERIES = ("nvml_process", "reserved", "allocated", "step_peak")
# What may set two runs apart: spec fields, then the versions in the environment.
_SPEC_KEYS = ("model", "source", "tokens", "prompt_tokens", "batch", "dtype", "attn", "cache")
_SPEC_KEYS += ("device", "cudnn_sdpa", "cap_bytes")
_ENV_KEYS = ("device_name", "torch", "transformers", "driver", "cuda_alloc_conf")


@dataclass(frozen=True)
class Compared:
    """One session in a comparison, with the name it goes by."""

    label: str
    view: SessionView
    path: Path | None = None


def _setting(view: SessionView, key: str) -> object:
    if key in _SPEC_KEYS:
        if key == "dtype" and view.loaded is not None:
            return view.loaded.dtype  # the dtype the run resolved to, not None
        if key == "device" and view.environment.get("device"):
            return view.environment["device"]  # the device the run used, not "auto"
        return view.spec.get(key)
    return view.environment.get(key)


def differences(views: list[SessionView]) -> list[str]:
    """The settings that are not the same in every session."""
    keys = _SPEC_KEYS + _ENV_KEYS
    return [k for k in keys if len({repr(_setting(v, k)) for v in views}) > 1]


def labelled(views: list[SessionView], paths: list[Path | None] | None = None) -> list[Compared]:
    """Each session named by the settings that set it apart (its file name where none do)."""
    paths = paths or [None] * len(views)
    keys = differences(views)
    out = []
    for n, (view, path) in enumerate(zip(views, paths, strict=True)):
        parts = [f"{k}={_setting(view, k)}" for k in keys]
        label = " ".join(parts) if parts else (path.stem if path else f"run {n + 1}")
        out.append(Compared(label, view, path))
    if len({c.label for c in out}) < len(out):  # same settings: tell them apart by number
        out = [Compared(f"{n + 1}: {c.label}", c.view, c.path) for n, c in enumerate(out)]
    return out


def peak_of(view: SessionView, name: str) -> int | None:
    if name == "allocated":
        peak = view.peak_allocated()
    else:
        peak = view.peaks.get(name)
    return peak.value if peak else None


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
