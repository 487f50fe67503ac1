"""The start form's logic without Textual: the fields' values, their errors, model facts.

`read_form` names every bad field at once, each under itself and as the form labels
it ("Tokens", not "--tokens"): the fields that read on their own first, then
`resolve()` again and again, each field it refuses (UsageError.field) set to a value
that passes, until it finds no more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES
from vramtui.models.catalogue import Entry
from vramtui.runspec import DeviceList, ResolvedRun, RunSpec, model_label, resolve
from vramtui.runspec.quant import METHODS
from vramtui.units import format_bytes

FIELDS = (
    "source", "path", "tokens", "prompt_tokens", "batch", "dtype", "quant", "attn", "cache",
    "device",
)  # fmt: skip
# Where an error about a field is shown when the form has no place of its own for it.
SHOWN_AT = {"model": "model", "prompt": "form", "gpu_memory": "form"}
INT_FIELDS = ("tokens", "prompt_tokens", "batch")
# Each field as the form labels it, and the flag `vramtui run` names it by
LABELS = {
    "source": "Source", "path": "Path", "tokens": "Tokens", "prompt_tokens": "Prompt",
    "batch": "Batch", "dtype": "Dtype", "quant": "Quant", "attn": "Attention",
    "cache": "KV cache", "device": "Device",
}  # fmt: skip
FLAGS = {f"--{field.replace('_', '-')}": label for field, label in LABELS.items()}
FLAGS |= {"--double-quant": "double quant", "--cache-bits": "KV cache bits"}
FLAGS |= {"--checkpoint": "Path", "--config": "Path"}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])")
# What `resolve()` is given in place of a field it refused, to look for more errors
PASSING: dict[str, Callable[[RunSpec], RunSpec]] = {
    "tokens": lambda s: replace(s, tokens=1),
    "prompt_tokens": lambda s: replace(s, prompt_tokens=1),
    "batch": lambda s: replace(s, batch=1),
    "dtype": lambda s: replace(s, dtype=None),
    "quant": lambda s: replace(s, quant="none", double_quant=False),
    "attn": lambda s: replace(s, attn="sdpa"),
    "cache": lambda s: replace(s, cache="dynamic"),
    "device": lambda s: replace(s, device="auto"),
}


@dataclass(frozen=True)
class FormValues:
    """What the form's widgets hold, as text."""

    model: str
    source: str
    path: str
    tokens: str
    prompt_tokens: str
    batch: str
    dtype: str  # "auto" or a dtype
    attn: str
    device: str
    cache: str = "dynamic"
    quant: str = "none"
    double_quant: bool = False  # read only where the method has it (has_double_quant)
    cache_bits: str = "4"  # read only for the quantized cache


@dataclass(frozen=True)
class FormResult:
    run: ResolvedRun | None  # None while any field is wrong
    errors: dict[str, str]  # place on the form (a field, "model" or "form") -> message


def has_double_quant(quant: str) -> bool:
    """Whether a --quant method quantizes its constants again (bitsandbytes 4-bit)."""
    chosen = METHODS.get(quant)  # an unknown one is refused by resolve()
    return chosen is not None and chosen.backend == "bitsandbytes" and chosen.bits == 4


def place_of(field: str | None) -> str:
    """Where the form shows an error about `field`."""
    if field in FIELDS:
        return field
    return SHOWN_AT.get(field or "", "form")


def labelled(message: str) -> str:
    """A message in the form's words: '--prompt-tokens must be positive' -> 'Prompt must…'."""
    return _FLAG.sub(lambda m: FLAGS.get(m.group(1), m.group(1)), message)


def whole(text: str, label: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{label} must be a whole number, got {text.strip()!r}") from None
    if value <= 0:
        raise UsageError(f"{label} must be positive, got {value}")
    return value


def spec_from_form(values: FormValues, base: RunSpec) -> tuple[RunSpec, dict[str, str]]:
    """The spec the form describes (flags the form does not show keep their values; a
    number that does not read, a value that passes) and the errors of every field that
    does not read."""
    errors: dict[str, str] = {}
    numbers: dict[str, Any] = {}  # field -> int, as replace() takes them
    for field in INT_FIELDS:
        try:
            numbers[field] = whole(getattr(values, field), LABELS[field])
        except UsageError as exc:
            errors[field] = str(exc)
            numbers[field] = 1  # passes: resolve() looks for the other fields' errors
    path = values.path.strip() or None
    if values.source != "architecture" and path is None:
        errors["path"] = f"give the {values.source}'s path"
    if values.source == "architecture":
        model, path = values.model, None
    elif base.source == values.source and base.path == path:
        model = base.model
    else:
        model = model_label(path) if path else values.source
    spec = replace(
        base,
        model=model,
        source=values.source,
        path=path,
        dtype=None if values.dtype == "auto" else values.dtype,
        attn=values.attn,
        cache=values.cache,
        quant=values.quant,
        double_quant=values.double_quant and has_double_quant(values.quant),
        cache_bits=int(values.cache_bits) if values.cache == "quantized" else base.cache_bits,
        device=values.device,
        tokens=numbers["tokens"],
        prompt_tokens=numbers["prompt_tokens"],
        batch=numbers["batch"],
    )
    return spec, errors


def read_form(values: FormValues, base: RunSpec, devices: DeviceList) -> FormResult:
    spec, errors = spec_from_form(values, base)
    if "path" in errors:
        return FormResult(None, errors)  # nothing to resolve the model from
    passed: set[str] = set()
    while True:
        try:
            run = resolve(spec, devices)
        except UsageError as exc:
            errors.setdefault(place_of(exc.field), labelled(str(exc)))
            if exc.field not in PASSING or exc.field in passed:
                return FormResult(None, errors)
            passed.add(exc.field)
            spec = PASSING[exc.field](spec)
            continue
        return FormResult(None if errors else run, errors)


def model_facts(entry: Entry | None, dtype: str, batch: int = 1, quant: str = "none") -> str:
    """Two lines about a model: shape, weights and KV cache per token, in the dtype
    the run will use (float32 on the CPU unless asked); weights a method quantizes are
    said as they arrive, before it does."""
    if entry is None:
        return ""
    elem = DTYPE_BYTES[dtype]
    kv = entry.kv_bytes_per_token(elem, max(batch, 1))
    before = f" before {quant}" if quant != "none" else ""
    heads = f"{entry.heads} heads" + (
        f" ({entry.kv_heads} KV)" if entry.kv_heads != entry.heads else ""
    )
    return (
        f"{entry.name}: {entry.layers} layers, hidden {entry.hidden}, {heads}\n"
        f"weights {format_bytes(entry.weights_bytes(elem), 2)}{before} · "
        f"KV {format_bytes(kv)}/token ({dtype}, batch {max(batch, 1)})"
    )
