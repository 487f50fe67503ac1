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

# Words a fine-tuned or post-trained repo adds to its base model's name ("-Instruct",
# "-chat", "-it"), or a base repo to its own ("-Base", "-pt"): the weights differ, the
# architecture does not.
VARIANT_WORDS = frozenset({"instruct", "chat", "it", "base", "pt"})


def _base_key(name: str) -> str:
    """'Qwen/Qwen2.5-7B-Instruct' -> 'qwen/qwen2.5-7b': lowercase, without variant words."""
    return "-".join(w for w in name.strip().lower().split("-") if w not in VARIANT_WORDS)


def _by_base_key() -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in CATALOGUE.values():
        for name in (entry.name, entry.hub_id):
            out.setdefault(_base_key(name), entry.name)
    return out


_BY_BASE_KEY = _by_base_key()


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


def base_model(name: str) -> str | None:
    """The catalogue model a fine-tuned variant shares its architecture with:
    'Qwen/Qwen2.5-7B-Instruct' -> 'qwen2.5-7b'; None if the name is no variant of one."""
    if canonical_name(name) is not None:
        return None
    return _BY_BASE_KEY.get(_base_key(name))


def variant_note(name: str) -> str | None:
    """One line saying which catalogue model a variant is read as, or None."""
    base = base_model(name)
    return f"{name.strip()}: same architecture as {base}" if base else None


def suggestions(name: str, n: int = 3) -> list[str]:
    """Catalogue names close to an unknown `name` (short name or hub id): first those
    it begins, then the closest spellings."""
    forms = {name.strip().lower(), _base_key(name)}
    forms |= {form.rsplit("/", 1)[-1] for form in forms}
    spelled = {_base_key(e.hub_id).rsplit("/", 1)[-1]: e.name for e in CATALOGUE.values()}
    candidates = {**spelled, **{_base_key(e.name): e.name for e in CATALOGUE.values()}}
    found = [candidates[c] for c in candidates if any(c.startswith(f) for f in forms)]
    for form in sorted(forms, key=len, reverse=True):
        close = difflib.get_close_matches(form, list(candidates), n=n, cutoff=0.6)
        found += [candidates[c] for c in close]
    return list(dict.fromkeys(found))[:n]


def lookup(name: str) -> Entry:
    """Find a catalogue model by short name or hub id (any case), or a fine-tuned variant
    of one by its base model's name ('Qwen/Qwen2.5-7B-Instruct' is qwen2.5-7b)."""
    key = canonical_name(name) or base_model(name)
    if key is None:
        close = suggestions(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"unknown model {name!r}{hint}; `vramtui models` lists the {len(CATALOGUE)} known",
            field="model",
        )
    return CATALOGUE[key]
