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
from vramtui.runspec.train_spec import METHODS as TRAIN_METHODS
from vramtui.runspec.train_spec import OPTIMIZERS, TrainSpec
from vramtui.tui.card_plan_view import HERE, PLAN_OPTIONS
from vramtui.tui.form import INT_FIELDS, LABELS, has_double_quant
from vramtui.tui.train_form import TRAIN_FIELDS, TRAIN_LABELS, WORKLOADS, TrainValues

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
WORKLOAD_OPTIONS = [(w, w) for w in WORKLOADS]
TRAIN_METHOD_OPTIONS = [(m, m) for m in TRAIN_METHODS]
OPTIM_OPTIONS = [(o, o) for o in OPTIMIZERS]
ROW_LABELS = {**LABELS, **TRAIN_LABELS, "workload": "Workload", "plan": "Plan for"}
GENERATE_ONLY = ("tokens", "prompt_tokens", "cache")  # rows a fine-tuning run has not
FIELDS_CSS = """
StartScreen #fields { width: 1fr; height: 1fr; padding: 1 1 0 0; }
StartScreen .row { height: 1; margin-bottom: 1; }
StartScreen .label { width: 11; color: $text-muted; }
StartScreen .row Input, StartScreen .row Select { width: 1fr; }
StartScreen #double_quant { margin-left: 1; }
StartScreen #cache_bits { width: 10; margin-left: 1; }
StartScreen .field-error { display: none; color: $error; height: auto; margin: -1 0 1 11; }
StartScreen .field-error.-shown { display: block; }
StartScreen #run { margin-left: 11; }
"""


def _row(field: str, *widgets: Widget) -> ComposeResult:
    with Horizontal(classes="row", id=f"{field}-row"):
        yield Label(ROW_LABELS[field], classes="label")
        yield from widgets
    yield Static("", id=f"{field}-error", classes="field-error")


def _input_row(field: str, value: object) -> ComposeResult:
    yield from _row(field, Input(str(value), id=field, compact=True))


def _select(field: str, options: list[tuple[str, str]], value: str) -> Select[str]:
    return Select(options, value=value, allow_blank=False, id=field, compact=True)


def _select_row(field: str, options: list[tuple[str, str]], value: str) -> ComposeResult:
    yield from _row(field, _select(field, options, value))


def form_fields(
    spec: RunSpec, devices: list[tuple[str, str]], train: TrainSpec, workload: str
) -> ComposeResult:
    """Workload, Source, Path, the numbers, the choices, the card to plan for, the Run
    button and the form's own error; the fine-tuning recipe's rows among them (shown by
    `show_rows`)."""
    yield from _select_row("workload", WORKLOAD_OPTIONS, workload)
    yield from _select_row("source", SOURCE_OPTIONS, spec.source)
    placeholder = "config.json or checkpoint folder"
    path = Input(spec.path or "", placeholder=placeholder, id="path", compact=True)
    yield from _row("path", path)
    yield from _select_row("method", TRAIN_METHOD_OPTIONS, train.method)
    for field in INT_FIELDS:
        if field == "batch":
            yield from _input_row("seq", train.seq)
            yield from _input_row("steps", train.steps)
        yield from _input_row(field, getattr(spec, field))
    yield from _select_row("optim", OPTIM_OPTIONS, train.optim)
    yield from _select_row("dtype", DTYPE_OPTIONS, spec.dtype or "auto")
    double = Checkbox("double quant", spec.double_quant, id="double_quant", compact=True)
    yield from _row("quant", _select("quant", QUANT_OPTIONS, spec.quant), double)
    yield from _select_row("attn", ATTN_OPTIONS, spec.attn)
    bits = _select("cache_bits", CACHE_BITS_OPTIONS, str(spec.cache_bits))
    yield from _row("cache", _select("cache", CACHE_OPTIONS, spec.cache), bits)
    yield from _select_row("device", devices, spec.device)
    yield from _select_row("plan", PLAN_OPTIONS, HERE)  # a card other than the one here
    yield Button("Run", id="run", variant="primary", compact=True)
    yield Static("", id="form-error", classes="field-error")


def show_rows(fields: Widget, training: bool, quant: str, cache: str) -> None:
    """The rows of the workload chosen (`training`: fine-tuning's); the choice beside a
    field shown for the values that have it: double quantization beside bitsandbytes
    4-bit, the bits beside the quantized KV cache."""
    for field in GENERATE_ONLY:
        fields.query_one(f"#{field}-row").display = not training
    for field in TRAIN_FIELDS:
        fields.query_one(f"#{field}-row").display = training
    fields.query_one("#double_quant").display = has_double_quant(quant)
    fields.query_one("#cache_bits").display = cache == "quantized"


def train_values(fields: Widget) -> TrainValues:
    """What the fine-tuning rows hold, as text."""
    return TrainValues(
        method=str(fields.query_one("#method", Select).value),
        seq=fields.query_one("#seq", Input).value,
        steps=fields.query_one("#steps", Input).value,
        optim=str(fields.query_one("#optim", Select).value),
    )
