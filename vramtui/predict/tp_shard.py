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


def no_plan(model_type: str, version: str) -> str:
    """Why --tp refuses a model, in one line."""
    return (
        f"{model_type} has no tensor parallel plan in transformers {version} "
        "(Llama, Qwen, Mistral, Gemma, Phi have one)"
    )


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


TP_PLAN = "vramtui.predict.tracing.tp_plan"


def shares_from(data: dict[str, Any]) -> TpShares:
    ranks = tuple(RankShare(**r) for r in data["ranks"])
    return TpShares(
        data["tp"], data["whole_bytes"], data["kv_heads"], ranks, tuple(data["replicated"])
    )


def shares_for(config: dict[str, Any] | None, dtype: str, tp: int) -> TpShares:
    """Each rank's share of the model `config` describes, in `dtype` (computed in a
    child process, cached); UsageError, one line before anything runs, where the model
    has no tensor parallel plan."""
    from vramtui.errors import UsageError
    from vramtui.predict.tracing.traces import answer

    if not config:
        raise UsageError("--tp: the model's config could not be read", field="tp")
    reply = answer({"config": config, "dtype": dtype, "tp": tp}, module=TP_PLAN)
    if reply is None or not reply.get("ok"):
        error = reply.get("error") if reply else "no answer"
        raise UsageError(f"--tp: {error}", field="tp")
    return shares_from(reply)
