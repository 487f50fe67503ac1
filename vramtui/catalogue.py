"""The model catalogue: the OPT family by name, from its published architecture.

Pure Python (no torch): the engine turns an entry into a transformers config;
the estimator and the start screen read the numbers directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.errors import UsageError

OPT_VOCAB = 50272
OPT_POSITIONS = 2048
# OPT's learned position embedding keeps two extra rows (an offset of 2).
OPT_POSITION_OFFSET = 2

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


@dataclass(frozen=True)
class ModelInfo:
    """One decoder-only architecture, as far as memory is concerned."""

    name: str
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int
    word_embed_proj_dim: int
    do_layer_norm_before: bool = True
    hub_id: str = ""

    @property
    def params(self) -> int:
        """Parameter count with the lm_head tied to the token embedding."""
        h, ffn = self.hidden, self.ffn
        embeddings = self.vocab * self.word_embed_proj_dim
        embeddings += (self.positions + OPT_POSITION_OFFSET) * h
        projections = 0 if self.word_embed_proj_dim == h else 2 * h * self.word_embed_proj_dim
        attention = 4 * (h * h + h)  # q, k, v, out projections with biases
        mlp = (h * ffn + ffn) + (ffn * h + h)
        norms = 2 * 2 * h  # two LayerNorms a layer, weight and bias
        final_norm = 2 * h if self.do_layer_norm_before else 0
        return embeddings + projections + self.layers * (attention + mlp + norms) + final_norm

    def weights_bytes(self, dtype: str = "float16") -> int:
        return self.params * DTYPE_BYTES[dtype]

    def kv_bytes_per_token(self, dtype: str = "float16", batch: int = 1) -> int:
        """Key and value, every layer, one position: 2 x layers x hidden x bytes."""
        return 2 * self.layers * self.hidden * batch * DTYPE_BYTES[dtype]

    def config_kwargs(self) -> dict[str, object]:
        """Keyword arguments for transformers.OPTConfig."""
        return {
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "ffn_dim": self.ffn,
            "vocab_size": self.vocab,
            "max_position_embeddings": self.positions,
            "word_embed_proj_dim": self.word_embed_proj_dim,
            "do_layer_norm_before": self.do_layer_norm_before,
            "tie_word_embeddings": True,
            "activation_function": "relu",
        }


def _opt(name: str, hidden: int, layers: int, heads: int, proj: int | None = None) -> ModelInfo:
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


CATALOGUE: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        _opt("opt-125m", 768, 12, 12),
        _opt("opt-350m", 1024, 24, 16, proj=512),
        _opt("opt-1.3b", 2048, 24, 32),
        _opt("opt-2.7b", 2560, 32, 32),
        _opt("opt-6.7b", 4096, 32, 32),
        _opt("opt-13b", 5120, 40, 40),
        _opt("opt-30b", 7168, 48, 56),
        _opt("opt-66b", 9216, 64, 72),
    )
}


def model_names() -> list[str]:
    return list(CATALOGUE)


def lookup(name: str) -> ModelInfo:
    """Find a catalogue model by 'opt-1.3b' or 'facebook/opt-1.3b' (any case)."""
    key = name.strip().lower()
    key = key.removeprefix("facebook/")
    if key in CATALOGUE:
        return CATALOGUE[key]
    raise UsageError(f"unknown model {name!r}; known models: {', '.join(CATALOGUE)}")
