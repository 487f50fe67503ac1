"""The start form's logic without Textual: the fields' values, their errors, model facts.

`read_form` checks every field on its own first, so several bad fields are
named at once, each under itself; only a form whose fields all read goes to
`resolve()`, whose one error names its field (UsageError.field).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES
from vramtui.models.catalogue import Entry
from vramtui.runspec import DeviceList, ResolvedRun, RunSpec, model_label, resolve
from vramtui.units import format_bytes

FIELDS = (
    "source", "path", "tokens", "prompt_tokens", "batch", "dtype", "attn", "cache", "device",
)  # fmt: skip
# Where an error about a field is shown when the form has no place of its own for it.
SHOWN_AT = {"model": "model", "prompt": "form", "gpu_memory": "form"}
INT_FIELDS = (("tokens", "--tokens"), ("prompt_tokens", "--prompt-tokens"), ("batch", "--batch"))


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


@dataclass(frozen=True)
class FormResult:
    run: ResolvedRun | None  # None while any field is wrong
    errors: dict[str, str]  # place on the form (a field, "model" or "form") -> message


def place_of(field: str | None) -> str:
    """Where the form shows an error about `field`."""
    if field in FIELDS:
        return field
    return SHOWN_AT.get(field or "", "form")


def _whole(text: str, flag: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{flag} must be a whole number, got {text.strip()!r}") from None
    if value <= 0:
        raise UsageError(f"{flag} must be positive, got {value}")
    return value


def spec_from_form(values: FormValues, base: RunSpec) -> tuple[RunSpec | None, dict[str, str]]:
    """The spec the form describes (flags the form does not show keep their values),
    or the errors of every field that does not read."""
    errors: dict[str, str] = {}
    numbers: dict[str, Any] = {}  # field -> int, as replace() takes them
    for field, flag in INT_FIELDS:
        try:
            numbers[field] = _whole(getattr(values, field), flag)
        except UsageError as exc:
            errors[field] = str(exc)
    path = values.path.strip() or None
    if values.source != "architecture" and path is None:
        errors["path"] = f"give the {values.source}'s path"
    if errors:
        return None, errors
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
        device=values.device,
        **numbers,
    )
    return spec, {}


def read_form(values: FormValues, base: RunSpec, devices: DeviceList) -> FormResult:
    spec, errors = spec_from_form(values, base)
    if spec is None:
        return FormResult(None, errors)
    try:
        return FormResult(resolve(spec, devices), {})
    except UsageError as exc:
        return FormResult(None, {place_of(exc.field): str(exc)})


def model_facts(entry: Entry | None, dtype: str, batch: int = 1) -> str:
    """Two lines about a model: shape, weights and KV cache per token, in the dtype
    the run will use (float32 on the CPU unless asked)."""
    if entry is None:
        return ""
    elem = DTYPE_BYTES[dtype]
    kv = entry.kv_bytes_per_token(elem, max(batch, 1))
    heads = f"{entry.heads} heads" + (
        f" ({entry.kv_heads} KV)" if entry.kv_heads != entry.heads else ""
    )
    return (
        f"{entry.name}: {entry.layers} layers, hidden {entry.hidden}, {heads}\n"
        f"weights {format_bytes(entry.weights_bytes(elem), 2)} · "
        f"KV {format_bytes(kv)}/token ({dtype}, batch {max(batch, 1)})"
    )
