"""The OPT family: its published sizes, and OPT config.json files read as a ModelInfo."""

from __future__ import annotations

from typing import Any

from vramtui.models.architecture import ModelInfo

OPT_VOCAB = 50272
OPT_POSITIONS = 2048

# OPTConfig's defaults (transformers), for keys a config.json leaves out.
_OPT_DEFAULTS: dict[str, Any] = {
    "vocab_size": OPT_VOCAB,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "ffn_dim": 3072,
    "num_attention_heads": 12,
    "max_position_embeddings": OPT_POSITIONS,
    "do_layer_norm_before": True,
}
_POSITIVE_INTS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "ffn_dim",
    "num_attention_heads",
    "max_position_embeddings",
)


def opt(name: str, hidden: int, layers: int, heads: int, proj: int | None = None) -> ModelInfo:
    """One published OPT size (ffn = 4 x hidden; opt-350m is the post-LN one)."""
    return ModelInfo(
        name=name,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=4 * hidden,
        vocab=OPT_VOCAB,
        positions=OPT_POSITIONS,
        word_embed_proj_dim=proj or hidden,
        do_layer_norm_before=name != "opt-350m",
        hub_id=f"facebook/{name}",
    )


PUBLISHED = (
    opt("opt-125m", 768, 12, 12),
    opt("opt-350m", 1024, 24, 16, proj=512),
    opt("opt-1.3b", 2048, 24, 32),
    opt("opt-2.7b", 2560, 32, 32),
    opt("opt-6.7b", 4096, 32, 32),
    opt("opt-13b", 5120, 40, 40),
    opt("opt-30b", 7168, 48, 56),
    opt("opt-66b", 9216, 64, 72),
    opt("opt-175b", 12288, 96, 96),  # the paper's model (weights on request, never on the hub)
)


def why_not_modelled(config: dict[str, Any]) -> str | None:
    """What keeps a config.json from being read as a ModelInfo, or None."""
    if config.get("model_type") != "opt":
        return f"model_type {config.get('model_type')!r} (only 'opt' is modelled)"
    for key, wanted in (
        ("enable_bias", True),
        ("layer_norm_elementwise_affine", True),
        ("tie_word_embeddings", True),
    ):
        if config.get(key, True) is not wanted:
            return f"{key}={config.get(key)!r} (only {wanted} is modelled)"
    if config.get("_remove_final_layer_norm", False):
        return "_remove_final_layer_norm=True (not modelled)"
    values = {**_OPT_DEFAULTS, **{k: config[k] for k in _OPT_DEFAULTS if k in config}}
    for key in _POSITIVE_INTS:
        if not (isinstance(values[key], int) and values[key] > 0):
            return f"{key}={values[key]!r} (expected a positive whole number)"
    proj = config.get("word_embed_proj_dim") or values["hidden_size"]
    if not isinstance(proj, int) or proj <= 0:
        return f"word_embed_proj_dim={proj!r} (expected a positive whole number)"
    if values["hidden_size"] % values["num_attention_heads"]:
        return "hidden_size is not a multiple of num_attention_heads"
    return None


def model_info_for_config(config: dict[str, Any]) -> ModelInfo | None:
    """A ModelInfo for an OPT config.json dict; None where `why_not_modelled` says why."""
    if why_not_modelled(config) is not None:
        return None
    values = {**_OPT_DEFAULTS, **{k: config[k] for k in _OPT_DEFAULTS if k in config}}
    hidden = values["hidden_size"]
    return ModelInfo(
        name=str(config.get("_name_or_path") or "opt (config)"),
        hidden=hidden,
        layers=values["num_hidden_layers"],
        heads=values["num_attention_heads"],
        ffn=values["ffn_dim"],
        vocab=values["vocab_size"],
        positions=values["max_position_embeddings"],
        word_embed_proj_dim=config.get("word_embed_proj_dim") or hidden,
        do_layer_norm_before=bool(values["do_layer_norm_before"]),
    )


def opt_model(name: str) -> ModelInfo:
    """A published OPT size by short name or hub id (any case)."""
    key = name.strip().lower().removeprefix("facebook/")
    for info in PUBLISHED:
        if info.name == key:
            return info
    raise KeyError(f"no OPT model {name!r}")
