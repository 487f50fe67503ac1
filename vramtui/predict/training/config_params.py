"""A training run's parameters from a config's numbers alone: the inventory the
training estimate replays (shapes, dtypes, which train), with no model built.

Pure Python. The base's tensors come from config_weights.py (the families written
there) or, for OPT, `opt_weights` here; the recipe (recipe.py) changes them as the real one does:
- full: every parameter trained, in the run's dtype;
- lora: the base frozen in the run's dtype; peft's adapters on every linear layer of
  the decoder (`all-linear`: never the output head), or on the named modules: lora_A
  (r x in) and lora_B (out x r), in float32 (peft's `autocast_adapter_dtype` upcasts
  adapters on a 16-bit base);
- qlora: the decoder's linear layers stored as packed nf4 ((n + 1) // 2 uint8
  elements, as bitsandbytes' Params4bit), every other parameter upcast to float32 by
  `prepare_model_for_kbit_training`, then the same adapters.
A tied output head is the embedding (one parameter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vramtui.models.architecture import DTYPE_BYTES
from vramtui.predict.config_weights import ConfigWeights, config_weights
from vramtui.predict.quant_storage import LinearWeight
from vramtui.predict.training.optimizer_states import Param

ADAPTER_DTYPE = "float32"


@dataclass(frozen=True)
class Linear:
    """A linear layer of the decoder: its module name, in and out features."""

    name: str
    cols: int  # in features
    rows: int  # out features
    adapted: bool  # LoRA adapts it


@dataclass(frozen=True)
class ConfigParams:
    """The parameters to train and the buffers, of a config and a recipe."""

    params: tuple[Param, ...]
    buffers: tuple[int, ...]
    linears: tuple[Linear, ...]  # the decoder's, in the model's order


@lru_cache(maxsize=64)
def _written(config_json: str, dtype: str) -> ConfigWeights | None:
    config = json.loads(config_json)
    if config.get("model_type") == "opt":
        return opt_weights(config, dtype)
    return config_weights(config, dtype)


def _opt_int(c: dict[str, Any], key: str, default: int = 0) -> int:
    value = c.get(key)
    return value if isinstance(value, int) and value > 0 else default


def opt_weights(c: dict[str, Any], dtype: str) -> ConfigWeights:
    """OPT's parameters as transformers' OPTForCausalLM holds them: the token and learned
    position embeddings (two positions more than the model takes), the projections in
    and out where the embedding is narrower than the hidden size, each layer's biased
    q, k, v and out projections, fc1 and fc2 and two LayerNorms, the final LayerNorm
    where the norms come first; the head is the token embedding."""
    hidden, elem = _opt_int(c, "hidden_size"), DTYPE_BYTES[dtype]
    ffn, vocab = _opt_int(c, "ffn_dim", 4 * hidden), _opt_int(c, "vocab_size")
    word = _opt_int(c, "word_embed_proj_dim", hidden)
    positions = _opt_int(c, "max_position_embeddings", 2048) + 2
    base = "model.decoder"
    named = [(f"{base}.embed_tokens.weight", vocab * word)]
    named += [(f"{base}.embed_positions.weight", positions * hidden)]
    linears: list[LinearWeight] = []
    if word != hidden:
        named += [(f"{base}.project_out.weight", word * hidden)]
        named += [(f"{base}.project_in.weight", hidden * word)]
        linears += [LinearWeight(f"{base}.project_out", word, hidden, True, True)]
        linears += [LinearWeight(f"{base}.project_in", hidden, word, True, True)]
    if c.get("do_layer_norm_before", True):
        named += [(f"{base}.final_layer_norm.{k}", hidden) for k in ("weight", "bias")]
    for i in range(_opt_int(c, "num_hidden_layers")):
        at = f"{base}.layers.{i}"
        sizes = [(f"self_attn.{n}", hidden, hidden) for n in ("k_proj", "v_proj", "q_proj")]
        sizes += [("self_attn.out_proj", hidden, hidden), ("fc1", ffn, hidden)]
        sizes += [("fc2", hidden, ffn)]
        for name, rows, cols in sizes:
            named += [(f"{at}.{name}.weight", rows * cols), (f"{at}.{name}.bias", rows)]
            linears.append(LinearWeight(f"{at}.{name}", rows, cols, True, True))
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            named += [(f"{at}.{norm}.{k}", hidden) for k in ("weight", "bias")]
    total = sum(n for _, n in named)
    return ConfigWeights(tuple((n, k * elem) for n, k in named), (), tuple(linears), total)


def _targets(targets: str, name: str) -> bool:
    if targets == "all-linear":
        return True
    wanted = {t.strip() for t in targets.split(",")}
    return name.rsplit(".", 1)[-1] in wanted


def _shape(
    name: str, numel: int, hidden: int, vocab: int, by_name: dict[str, Linear]
) -> tuple[int, ...]:
    """A checkpoint tensor's shape: a linear layer's (out, in), an embedding's (rows,
    hidden), else one dimension."""
    module, _, kind = name.rpartition(".")
    linear = by_name.get(module)
    if linear is not None and kind == "weight":
        return (linear.rows, linear.cols)
    if module.endswith("embed_tokens") and vocab and numel % vocab == 0:
        return (vocab, numel // vocab)  # OPT's may be narrower than the hidden size
    if kind == "weight" and numel > hidden and numel % hidden == 0:
        return (numel // hidden, hidden)
    return (numel,)


def config_params(
    config: dict[str, Any], method: str, dtype: str, lora_r: int, targets: str
) -> ConfigParams | None:
    """The inventory of `config` under `method` (None: a family config_weights does not
    write out)."""
    written = _written(json.dumps(config, sort_keys=True, default=str), dtype)
    if written is None:
        return None
    adapters = method in ("lora", "qlora")
    linears = tuple(
        Linear(w.name, w.cols, w.rows, adapters and _targets(targets, w.name))
        for w in written.linears
        if w.bnb
    )
    by_name = {linear.name: linear for linear in linears}
    hidden = int(config.get("hidden_size") or 0) or 1
    vocab = int(config.get("vocab_size") or 0)
    elem = DTYPE_BYTES[dtype]
    params: list[Param] = []
    for name, nbytes in written.named:
        shape = _shape(name, nbytes // elem, hidden, vocab, by_name)
        module = name.rpartition(".")[0]
        if method == "full":
            params.append(Param(name, shape, dtype, True))
        elif method == "qlora" and module in by_name and name.endswith(".weight"):
            packed = (shape[0] * shape[1] + 1) // 2
            params.append(Param(name, (packed, 1), "uint8", False, True))
        else:
            params.append(Param(name, shape, "float32" if method == "qlora" else dtype, False))
        linear = by_name.get(module)
        if linear is not None and linear.adapted and name.endswith(".weight"):
            params.append(Param(f"{module}.lora_A", (lora_r, linear.cols), ADAPTER_DTYPE, True))
            params.append(Param(f"{module}.lora_B", (linear.rows, lora_r), ADAPTER_DTYPE, True))
    buffers = tuple(size for _, size in written.buffers)
    return ConfigParams(tuple(params), buffers, linears)
