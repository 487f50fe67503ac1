"""An approximate trace made from a config's numbers alone, where no trace is cached.

Pure Python. Tracing a model's code (predict/tracing/) spawns a child process per
model and shape; a search over the whole catalogue cannot wait for 48 of them. This
module writes a `Trace` the estimator reads like a real one from the config's sizes:

- the checkpoint: every tensor by name and size, and the linear layers the quantizers
  convert, for the families config_weights.py writes out (a quantized estimate runs
  on them); for any other family the token embedding, an untied lm_head, and each
  decoder layer's share of the remaining parameters (the load's totals; its block
  layout is coarser), and no linear layers (no quantized estimate);
- the cache: K and V per layer, batch x kv heads x head dim, sliding layers (Gemma 2
  and 3, or a config's `layer_types`) held at their window;
- a forward's peak above the weights and the cache: the last layer's hidden states
  (layer input, residual, q, k, v, output), its gated MLP (gate, up, their product),
  the last position's logits, the old K (or V) a DynamicCache's `torch.cat` still
  holds beside the new one, and with eager attention the score matrices
  (model dtype, float32 softmax, back; a float32 copy of the input where the
  softmax converts it first) and the causal mask.

The traced decode steps of Llama, Qwen2 and Mistral grow by one layer's K row per
cached position, which is the `torch.cat` term here. Every figure from this module
is an approximation: the callers say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vramtui.models.architecture import DTYPE_BYTES
from vramtui.predict.config_weights import ConfigWeights, config_weights
from vramtui.predict.quant_storage import LinearWeight
from vramtui.predict.steps import softmax_copies_input
from vramtui.predict.tracing.traces import KvLayer, StepTrace, Trace, decode_points, query_row

FLOAT32 = 4


def _int(config: dict[str, Any], *keys: str, default: int = 0) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return default


@dataclass(frozen=True)
class Shape:
    """The sizes of a config that memory depends on."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def of(cls, config: dict[str, Any]) -> Shape:
        hidden = _int(config, "hidden_size", "n_embd", "d_model")
        heads = _int(config, "num_attention_heads", "n_head", default=1)
        # a mixture of experts runs each token through `num_experts_per_tok` experts
        experts = _int(config, "num_experts_per_tok", default=1)
        ffn = _int(config, "moe_intermediate_size") * experts or _int(
            config, "intermediate_size", "ffn_dim", default=4 * hidden
        )
        return cls(
            layers=_int(config, "num_hidden_layers", "n_layer"),
            hidden=hidden,
            ffn=ffn,
            heads=heads,
            kv_heads=_int(config, "num_key_value_heads", default=heads),
            head_dim=_int(config, "head_dim", default=hidden // heads),
            vocab=_int(config, "vocab_size"),
            tied=bool(config.get("tie_word_embeddings", True)),
        )


def windows(config: dict[str, Any], layers: int) -> list[int]:
    """Each layer's sliding window (0: the layer keeps every position)."""
    window = _int(config, "sliding_window")
    types = config.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return [window if t == "sliding_attention" else 0 for t in types]
    kind = config.get("model_type")
    if kind == "gemma2":  # sliding and global layers alternate, sliding first
        return [window if i % 2 == 0 else 0 for i in range(layers)]
    pattern = _int(config, "sliding_window_pattern")
    if kind == "gemma3_text" and pattern:  # every pattern-th layer is global
        return [0 if (i + 1) % pattern == 0 else window for i in range(layers)]
    return [0] * layers


class _Forward:
    """A forward's peak above the weights and the cache it leaves (see the module)."""

    def __init__(
        self, shape: Shape, batch: int, dtype: str, attn: str, kv_row: int, cuda: bool
    ) -> None:
        self.shape, self.batch, self.attn, self.kv_row = shape, batch, attn, kv_row
        self.elem = DTYPE_BYTES[dtype]
        # bytes per score alive at the softmax: the scores, the float32 result, and the
        # larger of the float32 copy of its input (where it converts first) and the
        # model-dtype copy it is cast back to
        upcast = FLOAT32 if softmax_copies_input(dtype, cuda) else 0
        back = self.elem if self.elem != FLOAT32 else 0
        self.score_bytes = self.elem + FLOAT32 + max(upcast, back)

    def extra(self, new: int, cached: int) -> int:
        s, b, e = self.shape, self.batch, self.elem
        act = b * new * s.hidden * e
        ffn = b * new * s.ffn * e
        logits = b * s.vocab * e
        old_kv = self.kv_row * (cached - new)  # torch.cat: the old K beside the new
        attention = 6 * act + old_kv
        mlp = 3 * act + 3 * ffn
        peak = max(attention, mlp) + logits
        if self.attn == "eager":
            scores = b * s.heads * new * cached
            mask = b * new * cached * e
            peak = max(peak, 4 * act + mask + scores * self.score_bytes + logits)
        return peak


@dataclass(frozen=True)
class _Checkpoint:
    names: tuple[str, ...]
    tensors: tuple[int, ...]
    buffers: tuple[int, ...]
    linears: tuple[LinearWeight, ...]


@lru_cache(maxsize=256)
def _written(config_json: str, dtype: str) -> ConfigWeights | None:
    """`config_weights` of a config (as sorted JSON): a search asks for the same model's
    checkpoint at every setting it tries, and writing it out sorts every name."""
    return config_weights(json.loads(config_json), dtype)


def _checkpoint(
    config: dict[str, Any], shape: Shape, params: int, elem: int, dtype: str
) -> _Checkpoint:
    """Written out where the family is known, else the per-layer shares (no names, no
    buffers, no linear layers)."""
    written = _written(json.dumps(config, sort_keys=True, default=str), dtype)
    if written is not None:
        names = tuple(name for name, _ in written.named)
        tensors = tuple(size for _, size in written.named)
        buffers = tuple(size for _, size in written.buffers)
        return _Checkpoint(names, tensors, buffers, written.linears)
    embed = shape.vocab * shape.hidden * elem
    heads = embed if shape.tied else 2 * embed
    per_layer = max(0, params * elem - heads) // max(shape.layers, 1)
    tensors = (embed, *(per_layer,) * shape.layers) + (() if shape.tied else (embed,))
    return _Checkpoint((), tensors, (), ())


def config_trace(
    name: str,
    config: dict[str, Any],
    params: int,
    positions: int,
    *,
    prompt: int,
    batch: int,
    dtype: str,
    attn: str,
    backend: str,
) -> Trace:
    """A `Trace` of `config` for this run shape, from its numbers alone (see the module)."""
    shape = Shape.of(config)
    elem = DTYPE_BYTES[dtype]
    weights = _checkpoint(config, shape, params, elem, dtype)
    row = batch * shape.kv_heads * shape.head_dim * elem
    layers = tuple(KvLayer(row, w) for w in windows(config, shape.layers))
    forward = _Forward(shape, batch, dtype, attn, row, backend == "cuda")
    prefill = StepTrace(prompt, forward.extra(prompt, prompt), 0, 0)
    decode = tuple(
        StepTrace(c, forward.extra(1, c), 0, 0) for c in decode_points(prompt, positions)
    )
    return Trace(
        name=name,
        model_type=str(config.get("model_type", "")),
        model_class="(from the config's numbers)",
        params=params,
        positions=positions,
        vocab=shape.vocab,
        tensors=weights.tensors,
        buffers=weights.buffers,
        layers=layers,
        prompt=prompt,
        batch=batch,
        dtype=dtype,
        attn=attn,
        backend="cuda" if backend == "cuda" else "cpu",
        prefill=prefill,
        decode=decode,
        query_row=query_row(config, batch, dtype),
        tensor_names=weights.names,
        linears=weights.linears,
    )
