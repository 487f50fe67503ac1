"""A model's checkpoint tensors and linear layers, named and sized from its config's
numbers, for the families whose layout is written here.

Pure Python. The approximate trace (config_trace.py) reads its weights from here: each
checkpoint tensor as transformers builds it (name, bytes, in the loader's order), the
buffers no checkpoint holds (rotary frequencies, Gemma's embedding scale), and
each linear layer as the quantizers see it (predict/quant_storage.py), so a quantized
estimate runs on a model whose code was never traced. The layouts are transformers'
modelling code for each family (Llama, Mistral, Qwen 2 and 3, Qwen 3 MoE, Mixtral,
Gemma 2 and 3, Phi-3, GPT-NeoX); every catalogue model of these families is held to
its meta-device model, tensor by tensor (tests/test_config_weights.py). Which layers
are converted is transformers' default skip list for these families: every decoder
layer's linear layers, never the lm_head. A mixture's experts are 3-D parameters and
its router is not an `nn.Linear`: neither is converted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vramtui.models.architecture import DTYPE_BYTES, natural_key
from vramtui.predict.quant_storage import LinearWeight

FLOAT32 = 4  # rotary frequencies are float32 buffers

Params = list[tuple[str, int]]  # (name, elements)
Linears = list[tuple[str, int, int]]  # (module name, rows, cols)


@dataclass(frozen=True)
class ConfigWeights:
    """What the loader reads and the quantizers see, from a config."""

    named: tuple[tuple[str, int], ...]  # (name, bytes), in the loader's order
    buffers: tuple[tuple[str, int], ...]  # (name, bytes): not in the checkpoint
    linears: tuple[LinearWeight, ...]  # in the model's module order
    params: int  # parameters (rotary and scale buffers are not)


@dataclass(frozen=True)
class _Dims:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    layers: int

    @classmethod
    def of(cls, c: dict[str, Any]) -> _Dims:
        hidden = _get(c, "hidden_size")
        heads = _get(c, "num_attention_heads")
        return cls(
            hidden=hidden,
            heads=heads,
            kv_heads=_get(c, "num_key_value_heads", heads),
            head_dim=_get(c, "head_dim", hidden // heads if heads else 0),
            ffn=_get(c, "intermediate_size", 4 * hidden),
            vocab=_get(c, "vocab_size"),
            layers=_get(c, "num_hidden_layers"),
        )


def _get(c: dict[str, Any], key: str, default: int = 0) -> int:
    value = c.get(key)
    return value if isinstance(value, int) and value > 0 else default


def _linear(params: Params, linears: Linears, name: str, rows: int, cols: int, bias: bool) -> None:
    params.append((f"{name}.weight", rows * cols))
    if bias:
        params.append((f"{name}.bias", rows))
    linears.append((name, rows, cols))


def _attention(c: dict[str, Any], d: _Dims, at: str, p: Params, lin: Linears) -> None:
    """Separate q, k, v and o projections (Llama's layout and its descendants')."""
    kind = c.get("model_type")
    bias = bool(c.get("attention_bias", False))
    qkv_bias = bias or kind == "qwen2"
    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
        _linear(p, lin, f"{at}.self_attn.{name}", rows, d.hidden, qkv_bias)
    _linear(p, lin, f"{at}.self_attn.o_proj", d.hidden, q, bias)
    if kind in ("qwen3", "qwen3_moe", "gemma3_text"):
        p += [(f"{at}.self_attn.q_norm.weight", d.head_dim)]
        p += [(f"{at}.self_attn.k_norm.weight", d.head_dim)]


def _gated_mlp(c: dict[str, Any], d: _Dims, at: str, ffn: int, p: Params, lin: Linears) -> None:
    bias = bool(c.get("mlp_bias", False))
    _linear(p, lin, f"{at}.mlp.gate_proj", ffn, d.hidden, bias)
    _linear(p, lin, f"{at}.mlp.up_proj", ffn, d.hidden, bias)
    _linear(p, lin, f"{at}.mlp.down_proj", d.hidden, ffn, bias)


def _experts(d: _Dims, at: str, experts: int, ffn: int, p: Params) -> None:
    p += [(f"{at}.mlp.gate.weight", experts * d.hidden)]
    p += [(f"{at}.mlp.experts.gate_up_proj", experts * 2 * ffn * d.hidden)]
    p += [(f"{at}.mlp.experts.down_proj", experts * d.hidden * ffn)]


def _sparse(c: dict[str, Any], i: int) -> bool:
    """Whether decoder layer `i` of a mixture holds experts (Qwen 3 MoE may keep some
    layers dense)."""
    if c.get("model_type") == "mixtral":
        return True
    step = _get(c, "decoder_sparse_step", 1)
    return i not in (c.get("mlp_only_layers") or []) and (i + 1) % step == 0


def _llama_layer(c: dict[str, Any], d: _Dims, i: int, p: Params, lin: Linears) -> None:
    at = f"model.layers.{i}"
    _attention(c, d, at, p, lin)
    kind = c.get("model_type")
    if kind in ("mixtral", "qwen3_moe") and _sparse(c, i):
        experts = _get(c, "num_local_experts") or _get(c, "num_experts")
        ffn = _get(c, "moe_intermediate_size", d.ffn)
        _experts(d, at, experts, ffn, p)
    else:
        _gated_mlp(c, d, at, d.ffn, p, lin)
    norms = ["input_layernorm", "post_attention_layernorm"]
    if kind in ("gemma2", "gemma3_text"):
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    p += [(f"{at}.{norm}.weight", d.hidden) for norm in norms]


def _phi3_layer(c: dict[str, Any], d: _Dims, i: int, p: Params, lin: Linears) -> None:
    at = f"model.layers.{i}"
    qkv = (d.heads + 2 * d.kv_heads) * d.head_dim
    _linear(p, lin, f"{at}.self_attn.o_proj", d.hidden, d.heads * d.head_dim, False)
    _linear(p, lin, f"{at}.self_attn.qkv_proj", qkv, d.hidden, False)
    _linear(p, lin, f"{at}.mlp.gate_up_proj", 2 * d.ffn, d.hidden, False)
    _linear(p, lin, f"{at}.mlp.down_proj", d.hidden, d.ffn, False)
    norms = ("input_layernorm", "post_attention_layernorm")
    p += [(f"{at}.{norm}.weight", d.hidden) for norm in norms]


def _neox_layer(c: dict[str, Any], d: _Dims, i: int, p: Params, lin: Linears) -> None:
    at = f"gpt_neox.layers.{i}"
    for norm in ("input_layernorm", "post_attention_layernorm"):
        p += [(f"{at}.{norm}.weight", d.hidden), (f"{at}.{norm}.bias", d.hidden)]
    bias = bool(c.get("attention_bias", True))
    _linear(p, lin, f"{at}.attention.query_key_value", 3 * d.hidden, d.hidden, bias)
    _linear(p, lin, f"{at}.attention.dense", d.hidden, d.hidden, bias)
    _linear(p, lin, f"{at}.mlp.dense_h_to_4h", d.ffn, d.hidden, True)
    _linear(p, lin, f"{at}.mlp.dense_4h_to_h", d.hidden, d.ffn, True)


Layer = Callable[[dict[str, Any], _Dims, int, Params, Linears], None]
LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "gemma2",
              "gemma3_text")  # fmt: skip
FAMILIES: dict[str, tuple[str, Layer]] = {
    **{kind: ("model", _llama_layer) for kind in LLAMA_LIKE},
    "phi3": ("model", _phi3_layer),
    "gpt_neox": ("gpt_neox", _neox_layer),
}


def _layer_types(c: dict[str, Any], layers: int) -> list[str]:
    """Gemma 3's layer kinds: the config's list, else its pattern (every pattern-th
    layer attends to every position)."""
    types = c.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return [str(t) for t in types]
    pattern = _get(c, "sliding_window_pattern", 6)
    full, sliding = "full_attention", "sliding_attention"
    return [full if (i + 1) % pattern == 0 else sliding for i in range(layers)]


def _rotary(c: dict[str, Any], d: _Dims, base: str) -> list[tuple[str, int]]:
    """The rotary embedding's float32 frequencies (and their unscaled copy), bytes."""
    share = c.get("partial_rotary_factor") or c.get("rotary_pct") or 1.0
    size = -(-int(d.head_dim * share) // 2) * FLOAT32
    kinds = [""]
    if c.get("model_type") == "gemma3_text":  # one pair for each kind of layer it has
        kinds = [f"{kind}_" for kind in sorted(set(_layer_types(c, d.layers)))]
    freqs = ("inv_freq", "original_inv_freq")
    return [(f"{base}.rotary_emb.{k}{f}", size) for k in kinds for f in freqs]


def config_weights(config: dict[str, Any], dtype: str) -> ConfigWeights | None:
    """The checkpoint's tensors and linear layers of `config` in `dtype`; None for a
    family whose layout is not written here."""
    kind = str(config.get("model_type", ""))
    if kind not in FAMILIES:
        return None
    base, layer = FAMILIES[kind]
    d, elem = _Dims.of(config), DTYPE_BYTES[dtype]
    embed = "embed_in" if base == "gpt_neox" else "embed_tokens"
    params: Params = [(f"{base}.{embed}.weight", d.vocab * d.hidden)]
    linears: Linears = []
    for i in range(d.layers):
        layer(config, d, i, params, linears)
    if kind == "gpt_neox":
        params += [(f"{base}.final_layer_norm.weight", d.hidden)]
        params += [(f"{base}.final_layer_norm.bias", d.hidden)]
    else:
        params += [(f"{base}.norm.weight", d.hidden)]
    if not config.get("tie_word_embeddings", kind in ("gemma2", "gemma3_text")):
        params += [("lm_head.weight", d.vocab * d.hidden)]
    named = sorted(((name, n * elem) for name, n in params), key=lambda x: natural_key(x[0]))
    buffers = _rotary(config, d, base)
    if kind in ("gemma2", "gemma3_text"):
        buffers.insert(0, (f"{base}.embed_tokens.embed_scale", elem))
    found = [LinearWeight(name, rows, cols, True, True) for name, rows, cols in linears]
    found += [LinearWeight("lm_head", d.vocab, d.hidden, False, False)]
    return ConfigWeights(tuple(named), tuple(buffers), tuple(found), sum(n for _, n in params))
