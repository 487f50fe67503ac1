"""The start screen's form column: one labelled row per field, each with its error line.

A number field takes any text, so that `1.5` is refused under its field ("must be a
whole number") rather than read as 15 with its dot silently dropped.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Select, Static

from vramtui.runspec import ATTENTION, CACHES, DTYPES, RunSpec
from vramtui.tui.form import INT_FIELDS, LABELS

SOURCE_OPTIONS = [
    ("random weights", "architecture"),
    ("config.json", "config"),
    ("checkpoint folder", "checkpoint"),
    ("your script", "script"),
]
DTYPE_OPTIONS = [("auto (fp16 GPU, fp32 CPU)", "auto")] + [(d, d) for d in DTYPES]
ATTN_OPTIONS = [(a, a) for a in ATTENTION]
CACHE_OPTIONS = [(c, c) for c in CACHES]


def _row(widget: Input | Select[str], field: str) -> ComposeResult:
    with Horizontal(classes="row"):
        yield Label(LABELS[field], classes="label")
        yield widget
    yield Static("", id=f"{field}-error", classes="field-error")


def _select_row(field: str, options: list[tuple[str, str]], value: str) -> ComposeResult:
    yield from _row(Select(options, value=value, allow_blank=False, id=field, compact=True), field)


def form_fields(spec: RunSpec, devices: list[tuple[str, str]]) -> ComposeResult:
    """Source, Path, the numbers, the choices, the Run button and the form's own error."""
    yield from _select_row("source", SOURCE_OPTIONS, spec.source)
    placeholder = "config.json or checkpoint folder"
    path = Input(spec.path or "", placeholder=placeholder, id="path", compact=True)
    yield from _row(path, "path")
    for field in INT_FIELDS:
        yield from _row(Input(str(getattr(spec, field)), id=field, compact=True), field)
    yield from _select_row("dtype", DTYPE_OPTIONS, spec.dtype or "auto")
    yield from _select_row("attn", ATTN_OPTIONS, spec.attn)
    yield from _select_row("cache", CACHE_OPTIONS, spec.cache)
    yield from _select_row("device", devices, spec.device)
    yield Button("Run", id="run", variant="primary", compact=True)
    yield Static("", id="form-error", classes="field-error")
