"""The start screen's form column: one labelled row per field, each with its error line.

A number field takes any text, so that `1.5` is refused under its field ("must be a
whole number") rather than read as 15 with its dot silently dropped. A choice that
only some values of a field have sits beside it, shown only for those: double
quantization beside a bitsandbytes 4-bit Quant, the bits beside the quantized KV cache.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from vramtui.runspec import ATTENTION, CACHES, DTYPES, RunSpec
from vramtui.runspec.quant import CACHE_BITS, METHODS
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
# Each method with the library that quantizes it
QUANT_OPTIONS = [
    (f"{m.name} · {m.backend}" if m.backend else m.name, m.name) for m in METHODS.values()
]
CACHE_BITS_OPTIONS = [(f"{b}-bit", str(b)) for b in sorted(CACHE_BITS, reverse=True)]


def _row(field: str, *widgets: Widget) -> ComposeResult:
    with Horizontal(classes="row"):
        yield Label(LABELS[field], classes="label")
        yield from widgets
    yield Static("", id=f"{field}-error", classes="field-error")


def _select(field: str, options: list[tuple[str, str]], value: str) -> Select[str]:
    return Select(options, value=value, allow_blank=False, id=field, compact=True)


def _select_row(field: str, options: list[tuple[str, str]], value: str) -> ComposeResult:
    yield from _row(field, _select(field, options, value))


def form_fields(spec: RunSpec, devices: list[tuple[str, str]]) -> ComposeResult:
    """Source, Path, the numbers, the choices, the Run button and the form's own error."""
    yield from _select_row("source", SOURCE_OPTIONS, spec.source)
    placeholder = "config.json or checkpoint folder"
    path = Input(spec.path or "", placeholder=placeholder, id="path", compact=True)
    yield from _row("path", path)
    for field in INT_FIELDS:
        yield from _row(field, Input(str(getattr(spec, field)), id=field, compact=True))
    yield from _select_row("dtype", DTYPE_OPTIONS, spec.dtype or "auto")
    double = Checkbox("double quant", spec.double_quant, id="double_quant", compact=True)
    yield from _row("quant", _select("quant", QUANT_OPTIONS, spec.quant), double)
    yield from _select_row("attn", ATTN_OPTIONS, spec.attn)
    bits = _select("cache_bits", CACHE_BITS_OPTIONS, str(spec.cache_bits))
    yield from _row("cache", _select("cache", CACHE_OPTIONS, spec.cache), bits)
    yield from _select_row("device", devices, spec.device)
    yield Button("Run", id="run", variant="primary", compact=True)
    yield Static("", id="form-error", classes="field-error")
