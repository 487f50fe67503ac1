"""The model catalogue: architectures by short name or hub id, from their published configs.

Pure Python (no torch): the engine turns an entry into a transformers config;
the estimator and the start screen read the numbers directly.
"""

from __future__ import annotations

from vramtui.errors import UsageError
from vramtui.models.architecture import ModelInfo
from vramtui.models.opt import PUBLISHED as OPT_MODELS

CATALOGUE: dict[str, ModelInfo] = {m.name: m for m in OPT_MODELS}
_BY_HUB_ID = {m.hub_id.lower(): m.name for m in CATALOGUE.values() if m.hub_id}


def model_names() -> list[str]:
    return list(CATALOGUE)


def canonical_name(name: str) -> str | None:
    """'opt-1.3b', 'OPT-1.3B' or 'facebook/opt-1.3b' -> 'opt-1.3b'; None if unknown."""
    key = name.strip().lower()
    if key in CATALOGUE:
        return key
    return _BY_HUB_ID.get(key)


def lookup(name: str) -> ModelInfo:
    """Find a catalogue model by short name or hub id (any case)."""
    key = canonical_name(name)
    if key is None:
        raise UsageError(
            f"unknown model {name!r}; known models: {', '.join(CATALOGUE)}", field="model"
        )
    return CATALOGUE[key]
