"""`vramtui estimate --tp N`: each rank's weights and KV cache under tensor parallelism.

The weights each rank holds come from the model's tp_plan (predict.tp_shard), exact
where the run's ranks were measured; the KV cache at the end of the run is split by KV
heads. What the communication library and the activations add per rank is not in
these figures.
"""

from __future__ import annotations

import json
from typing import Any

from vramtui.errors import EXIT_OK
from vramtui.predict.estimator import held_positions, kv_bytes
from vramtui.predict.tp_shard import TpShares, shares_for
from vramtui.report.tables import table
from vramtui.runspec import ResolvedRun
from vramtui.units import format_bytes


def kv_share(shares: TpShares, whole_kv: int, rank: int) -> int:
    """One rank's KV cache: its KV heads' part of the whole (all of it where the plan
    leaves the heads whole)."""
    heads = shares.ranks[rank].kv_heads
    if heads is None or not shares.kv_heads:
        return whole_kv
    return whole_kv * heads // shares.kv_heads


def tp_estimate(resolved: ResolvedRun, model: Any, tp: int) -> dict[str, Any]:
    spec = resolved.spec
    shares = shares_for(resolved.config, resolved.dtype, tp)
    positions = held_positions(spec.prompt_tokens, spec.tokens, spec.tokens - 1, spec.cache)
    whole_kv = kv_bytes(model, resolved.dtype, spec.batch, positions)
    ranks = [
        {
            "rank": r.rank,
            "weights_bytes": r.weights_bytes,
            "sharded_bytes": r.sharded_bytes,
            "replicated_bytes": r.replicated_bytes,
            "kv_heads": r.kv_heads,
            "kv_cache_bytes_final": kv_share(shares, whole_kv, r.rank),
        }
        for r in shares.ranks
    ]
    return {
        "tp": tp,
        "whole_weights_bytes": shares.whole_bytes,
        "whole_kv_cache_bytes_final": whole_kv,
        "replicated_tensors": len(shares.replicated),
        "replicated_largest": list(shares.replicated[:3]),
        "ranks": ranks,
    }


def print_tp(resolved: ResolvedRun, model: Any, tp: int, as_json: bool) -> int:
    data = tp_estimate(resolved, model, tp)
    if as_json:
        print(json.dumps({"tensor_parallel": data}, indent=2))
        return EXIT_OK
    spec = resolved.spec
    print(
        f"Tensor parallel estimate — {spec.model}, --tp {tp}, {resolved.dtype}, "
        f"{spec.prompt_tokens} prompt + {spec.tokens} new tokens, batch {spec.batch}"
    )
    print()
    rows = [
        (
            str(r["rank"]),
            format_bytes(r["weights_bytes"], 2),
            format_bytes(r["replicated_bytes"], 2),
            str(r["kv_heads"] or "all"),
            format_bytes(r["kv_cache_bytes_final"], 2),
        )
        for r in data["ranks"]
    ]
    print(table(rows, ("rank", "weights", "of which replicated", "KV heads", "KV cache at end")))
    print()
    print(
        f"whole model: {format_bytes(data['whole_weights_bytes'], 2)} weights, "
        f"{format_bytes(data['whole_kv_cache_bytes_final'], 2)} KV cache at the end"
    )
    if data["replicated_tensors"]:
        largest = ", ".join(data["replicated_largest"])
        print(f"replicated on every rank: {data['replicated_tensors']} tensors ({largest}, ...)")
    print("not included: activations, the allocator's rounding, communication buffers")
    return EXIT_OK
