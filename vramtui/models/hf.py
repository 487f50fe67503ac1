"""A config dict (a catalogue entry's or a config.json's) as a transformers config.

transformers is imported inside the function: importing this module costs nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from vramtui.errors import UsageError


def transformers_config(data: dict[str, Any], where: str = "the config") -> Any:
    """`AutoConfig.for_model(model_type, **rest)`, on a deep copy (transformers edits
    nested dicts such as rope_scaling in place)."""
    from transformers import AutoConfig

    rest = copy.deepcopy(dict(data))
    model_type = rest.pop("model_type", None)
    if not model_type:
        raise UsageError(f"{where} has no 'model_type'", field="path")
    try:
        return AutoConfig.for_model(model_type, **rest)
    except (ValueError, KeyError) as exc:
        raise UsageError(f"unknown model_type {model_type!r} in {where}: {exc}") from None


def model_class(config: Any) -> Any:
    """The causal-LM class transformers' Auto mapping picks for a config."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.auto_factory import _get_model_class

    try:
        return _get_model_class(config, AutoModelForCausalLM._model_mapping)
    except (ValueError, KeyError):
        raise UsageError(
            f"{config.model_type!r} is not a causal language model transformers can build"
        ) from None


def meta_model(config: Any, dtype: Any, attn: str | None = None) -> Any:
    """The model, built on the meta device (no memory): shapes, dtypes, tying, code."""
    import torch

    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn is not None:
        kwargs["attn_implementation"] = attn
    with torch.device("meta"):
        return model_class(config)._from_config(config, **kwargs)


def first_line(exc: BaseException) -> str:
    """An exception's first line (its type's name where it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def short_reason(text: str) -> str:
    """transformers' refusal, as one short line: its first sentence, or what to do."""
    if "does not support an attention implementation through" in text and "scaled_dot" in text:
        return "transformers has no sdpa attention for this architecture; pass --attn eager"
    first = text.strip().splitlines()[0] if text.strip() else text
    return first.split(". ")[0].rstrip(".")
