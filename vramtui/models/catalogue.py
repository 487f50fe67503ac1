"""The model catalogue: architectures by short name or hub id, from their published configs.

Pure Python (no torch): the engine and the tracer turn an entry's config into a
transformers config (models/hf.py); the start screen and the estimator read the
numbers directly. OPT entries also carry the hand-written OPT record, which the
estimator models exactly; every other family is traced (predict/tracing/).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import ModelInfo
from vramtui.models.opt import PUBLISHED as OPT_MODELS
from vramtui.models.published import PUBLISHED


@dataclass(frozen=True)
class Entry:
    """One catalogue model."""

    name: str  # short: "llama-3.1-8b"
    hub_id: str  # "meta-llama/Llama-3.1-8B"
    family: str  # "Llama 3.1", "OPT", ...
    params: int  # parameters transformers builds (tied weights once)
    config: dict[str, Any] = field(repr=False, compare=False)  # config.json keys
    opt: ModelInfo | None = field(default=None, repr=False, compare=False)

    @property
    def positions(self) -> int | None:
        value = self.config.get("max_position_embeddings")
        return value if isinstance(value, int) else None

    def weights_bytes(self, elem_bytes: int) -> int:
        return self.params * elem_bytes

    def _int(self, *keys: str, default: int = 0) -> int:
        for key in keys:
            value = self.config.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return default

    @property
    def layers(self) -> int:
        return self._int("num_hidden_layers")

    @property
    def hidden(self) -> int:
        return self._int("hidden_size")

    @property
    def heads(self) -> int:
        return self._int("num_attention_heads", default=1)

    @property
    def kv_heads(self) -> int:
        return self._int("num_key_value_heads", default=self.heads)

    @property
    def head_dim(self) -> int:
        return self._int("head_dim", default=self.hidden // self.heads)

    def kv_bytes_per_token(self, elem_bytes: int, batch: int = 1) -> int:
        """K and V of every layer for one position, as the config reads (a sliding
        window caps it later; the estimate traces the real cache)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * elem_bytes * batch

    def matches(self, text: str) -> bool:
        """Whether `text` is in the short name, the hub id or the family (any case)."""
        needle = text.strip().lower()
        fields = (self.name, self.hub_id.lower(), self.family.lower())
        return not needle or any(needle in field for field in fields)


def _opt_entry(info: ModelInfo) -> Entry:
    config = {"model_type": "opt", **info.config_kwargs()}
    return Entry(info.name, info.hub_id, "OPT", info.params, config, info)


CATALOGUE: dict[str, Entry] = {
    **{m.name: _opt_entry(m) for m in OPT_MODELS},
    **{p.name: Entry(p.name, p.hub_id, p.family, p.params, p.config) for p in PUBLISHED},
}
_BY_HUB_ID = {e.hub_id.lower(): e.name for e in CATALOGUE.values() if e.hub_id}


def model_names() -> list[str]:
    return list(CATALOGUE)


def families() -> dict[str, list[Entry]]:
    """Entries grouped by family, in catalogue order."""
    out: dict[str, list[Entry]] = {}
    for entry in CATALOGUE.values():
        out.setdefault(entry.family, []).append(entry)
    return out


def canonical_name(name: str) -> str | None:
    """'opt-1.3b', 'OPT-1.3B' or 'facebook/opt-1.3b' -> 'opt-1.3b'; None if unknown."""
    key = name.strip().lower()
    if key in CATALOGUE:
        return key
    return _BY_HUB_ID.get(key)


def lookup(name: str) -> Entry:
    """Find a catalogue model by short name or hub id (any case)."""
    key = canonical_name(name)
    if key is None:
        close = difflib.get_close_matches(name.strip().lower(), list(CATALOGUE), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"unknown model {name!r}{hint}; `vramtui models` lists the {len(CATALOGUE)} known",
            field="model",
        )
    return CATALOGUE[key]
