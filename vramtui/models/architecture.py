"""One decoder-only architecture, as far as memory is concerned: its tensors' sizes.

Pure Python. The record is OPT-shaped (learned positions, biases, LayerNorm,
a tied lm_head); `vramtui.models.opt` holds the family's constants and reads OPT
config.json files into it.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
# OPT's learned position embedding keeps two extra rows (an offset of 2).
OPT_POSITION_OFFSET = 2


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """A state-dict name's sort key as transformers' loader has it (dot_natural_key):
    numbers by value, 'layers.2' before 'layers.10'."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in name.split("."))


@dataclass(frozen=True)
class ModelInfo:
    """An OPT-shaped decoder: every figure the estimator and the screens need."""

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

    def checkpoint_tensors(self) -> list[tuple[str, int]]:
        """(name, elements) of every tensor a checkpoint of this model holds (the tied
        lm_head is not written), in the order transformers' loader walks them."""
        h, f, p = self.hidden, self.ffn, self.word_embed_proj_dim
        decoder = "model.decoder."
        out = [
            (decoder + "embed_tokens.weight", self.vocab * p),
            (decoder + "embed_positions.weight", (self.positions + OPT_POSITION_OFFSET) * h),
        ]
        if p != h:
            out += [(decoder + "project_out.weight", h * p), (decoder + "project_in.weight", p * h)]
        if self.do_layer_norm_before:
            norm = decoder + "final_layer_norm."
            out += [(norm + "weight", h), (norm + "bias", h)]
        per_layer = [("self_attn." + proj, (h * h, h)) for proj in ("k_proj", "v_proj", "q_proj")]
        per_layer += [("self_attn.out_proj", (h * h, h)), ("self_attn_layer_norm", (h, h))]
        per_layer += [("fc1", (f * h, f)), ("fc2", (h * f, h)), ("final_layer_norm", (h, h))]
        for i in range(self.layers):
            for module, (weight, bias) in per_layer:
                prefix = f"{decoder}layers.{i}.{module}."
                out += [(prefix + "weight", weight), (prefix + "bias", bias)]
        return sorted(out, key=lambda item: natural_key(item[0]))

    @property
    def params(self) -> int:
        """Parameter count with the lm_head tied to the token embedding."""
        return sum(numel for _, numel in self.checkpoint_tensors())

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
