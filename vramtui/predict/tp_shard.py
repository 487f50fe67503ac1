"""Each rank's share of a model under tensor parallelism, from the model's own tp_plan.

transformers gives every model that supports tensor parallelism a plan: module name
patterns -> a parallel style. Each style places a module's parameters as torch's
DTensor does: sharded along one dimension (split as `torch.chunk` splits, so an uneven
size leaves the last ranks a row less) or replicated on every rank. Parameters the plan
does not name (the norms) and every buffer (rotary frequencies) are replicated: they
are why a rank holds more than 1/N of the model. The KV cache is split by KV heads
where the key projection is sharded colwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The dimension each style shards a parameter along, by the parameter's rank (ndim):
# None replicates it. Styles not listed here replicate every parameter.
_COLWISE = {1: -1, 2: 0, 3: 1}  # Shard(ndim - 2); a bias along its only dim
_ROWWISE = {2: -1, 3: -1}  # Shard(-1); the bias is replicated
SHARD_DIMS: dict[str, dict[int, int]] = {
    "colwise": _COLWISE,
    "colwise_gather_output": _COLWISE,
    "colwise_rep": _COLWISE,
    "unit_colwise": _COLWISE,
    "packed_colwise": _COLWISE,
    "rowwise": _ROWWISE,
    "rowwise_rep": _ROWWISE,
    "rowwise_split_input": _ROWWISE,
    "unit_rowwise": _ROWWISE,
    "packed_rowwise": _ROWWISE,
    "embedding_rowwise": {2: 0},
    "embedding_colwise": {2: 1},
}
KEY_PROJECTIONS = ("k_proj", "qkv_proj", "query_key_value")


def chunk_size(n: int, parts: int, index: int) -> int:
    """How many of `n` rows the `index`-th of `parts` ranks holds (torch.chunk's split,
    which DTensor's Shard uses)."""
    size = -(-n // parts)
    return max(0, min(n, (index + 1) * size) - index * size)


@dataclass(frozen=True)
class RankShare:
    """What one rank holds of the model's weights, and its share of the KV heads."""

    rank: int
    weights_bytes: int
    sharded_bytes: int  # of weights_bytes: this rank's slices of sharded parameters
    replicated_bytes: int  # of weights_bytes: parameters and buffers every rank holds whole
    kv_heads: int | None  # None: the plan leaves the heads whole on every rank


@dataclass(frozen=True)
class TpShares:
    tp: int
    whole_bytes: int  # the whole model, on one device
    kv_heads: int | None  # the model's KV heads (each rank's are in its RankShare)
    ranks: tuple[RankShare, ...]
    replicated: tuple[str, ...]  # the replicated parameters, largest first

    @property
    def largest(self) -> RankShare:
        """The rank that holds the most (the first of equals): it runs out first."""
        return max(self.ranks, key=lambda r: (r.weights_bytes, -r.rank))


def plan_style(plan: dict[str, str], module: str) -> str | None:
    """The style the plan gives `module` (patterns with `*` for a layer number)."""
    for pattern, style in plan.items():
        regex = re.escape(pattern).replace(r"\*", r"\d+")
        if re.fullmatch(regex, module):
            return style
    return None


def local_numel(shape: tuple[int, ...], dim: int | None, tp: int, rank: int) -> int:
    numel = 1
    for i, size in enumerate(shape):
        numel *= chunk_size(size, tp, rank) if dim is not None and i == dim % len(shape) else size
    return numel


def shard_dim(style: str | None, ndim: int, param: str) -> int | None:
    if style is None:
        return None
    if style in ("rowwise", "rowwise_rep", "rowwise_split_input", "unit_rowwise", "packed_rowwise"):
        if param == "bias":
            return None
    return SHARD_DIMS.get(style, {}).get(ndim)


def kv_heads_per_rank(plan: dict[str, str], kv_heads: int | None, tp: int) -> int | None:
    """Each rank's KV heads where the key projection is sharded colwise (None: whole)."""
    if kv_heads is None:
        return None
    sharded = any(
        key.rsplit(".", 1)[-1] in KEY_PROJECTIONS and style == "colwise"
        for key, style in plan.items()
    )
    return kv_heads // tp if sharded else None


def tp_shares(meta: Any, tp: int) -> TpShares:
    """Each of `tp` ranks' share of the meta model `meta` (models.hf.meta_model)."""
    import torch

    plan: dict[str, str] = dict(getattr(meta, "_tp_plan", None) or {})
    ranks = []
    replicated: dict[str, int] = {}
    whole = 0
    tensors = [*meta.named_parameters(), *meta.named_buffers()]
    config = meta.config
    heads = getattr(config, "num_key_value_heads", None) or getattr(
        config, "num_attention_heads", None
    )
    for rank in range(tp):
        sharded = kept = 0
        for name, tensor in tensors:
            module, _, param = name.rpartition(".")
            is_param = isinstance(tensor, torch.nn.Parameter)
            dim = shard_dim(plan_style(plan, module), tensor.ndim, param) if is_param else None
            size = tensor.element_size()
            if rank == 0:
                whole += tensor.numel() * size
            if dim is None:
                kept += tensor.numel() * size
                replicated[name] = tensor.numel() * size
            else:
                sharded += local_numel(tuple(tensor.shape), dim, tp, rank) * size
        ranks.append(
            RankShare(rank, sharded + kept, sharded, kept, kv_heads_per_rank(plan, heads, tp))
        )
    order = sorted(replicated, key=lambda n: -replicated[n])
    return TpShares(tp, whole, heads, tuple(ranks), tuple(order))


def spec_config(spec: Any) -> Any:
    """The transformers config a RunSpec names (its architecture, config or checkpoint)."""
    from vramtui.models.catalogue import lookup
    from vramtui.models.hf import transformers_config
    from vramtui.runspec.sources import read_config_source

    if spec.source == "architecture":
        return transformers_config(lookup(spec.model).config, spec.model)
    if spec.source == "config":
        return transformers_config(read_config_source(spec.path), str(spec.path))
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(spec.path, local_files_only=not spec.allow_download)


def shares_for(spec: Any, dtype: str, tp: int) -> TpShares:
    """Each rank's share of the model `spec` names in `dtype`; UsageError (one line,
    before anything runs) where the model has no tensor parallel plan."""
    import torch
    import transformers

    from vramtui.errors import UsageError
    from vramtui.models.hf import meta_model

    config = spec_config(spec)
    meta = meta_model(config, getattr(torch, dtype))
    if not getattr(meta, "_tp_plan", None):
        raise UsageError(
            f"--tp: {config.model_type} has no tensor parallel plan in transformers "
            f"{transformers.__version__} (Llama, Qwen, Mistral, Gemma, Phi have one)",
            field="tp",
        )
    return tp_shares(meta, tp)
