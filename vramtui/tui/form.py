"""The start form's logic without Textual: which field an error is about, model facts."""

from __future__ import annotations

from vramtui.catalogue import CATALOGUE, DTYPE_BYTES
from vramtui.units import format_bytes

FIELDS = ("source", "path", "tokens", "prompt_tokens", "batch", "dtype", "attn", "device")

# First match wins: the words a UsageError uses for each field.
_ERROR_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompt_tokens", ("--prompt-tokens",)),
    ("tokens", ("--tokens", "new tokens")),
    ("batch", ("--batch",)),
    ("dtype", ("dtype",)),
    ("attn", ("attention",)),
    ("device", ("device",)),
    ("path", ("config", "checkpoint", "json", "folder")),
    ("model", ("model",)),
    ("source", ("source",)),
)


def error_field(message: str) -> str | None:
    """The form field a UsageError message is about, or None."""
    lowered = message.lower()
    for field, words in _ERROR_WORDS:
        if any(word in lowered for word in words):
            return field
    return None


def model_facts(name: str, dtype: str, batch: int = 1) -> str:
    """Two lines about a catalogue model: shape, weights and KV cache per token."""
    info = CATALOGUE.get(name)
    if info is None:
        return ""
    dtype = dtype if dtype in DTYPE_BYTES else "float16"
    kv = info.kv_bytes_per_token(dtype, max(batch, 1))
    return (
        f"{info.name}: {info.layers} layers, hidden {info.hidden}, {info.heads} heads\n"
        f"weights {format_bytes(info.weights_bytes(dtype), 2)} · "
        f"KV {format_bytes(kv)}/token ({dtype}, batch {max(batch, 1)})"
    )
