"""A tensor-parallel run's ranks in its JSON summary: what each rank held and peaked at,
the imbalance between them and why, and the merge of several nodes' files by rank.

The summary of a tensor-parallel run is its lowest rank's summary (summary_format) with
one more key, `tensor_parallel`: the launch, a list of ranks and the imbalance. A node
records only its own ranks; `merge` joins the files of every node into one.
"""

from __future__ import annotations

from typing import Any

from vramtui.errors import UsageError
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import summary

KEY = "tensor_parallel"


def _peak(view: SessionView, name: str) -> int | None:
    peak = view.peaks.get(name)
    return peak.value if peak is not None else None


def rank_entry(view: SessionView, predicted_weights: int | None) -> dict[str, Any]:
    """One rank: what it held (weights, its KV share) and its peaks, as measured."""
    env = view.environment
    alloc = view.peak_allocated()
    nvml, reserved = _peak(view, "nvml_process"), _peak(view, "reserved")
    kv = next((s.kv_bytes for s in reversed(view.token_samples) if s.kv_bytes is not None), None)
    return {
        "rank": env.tp_rank,
        "node_rank": env.node_rank,
        "pid": env.engine_pid,
        "device": env.device,
        "status": view.status,
        "failure": view.failure.message if view.failure else None,
        "tokens_generated": len(view.token_samples),
        "weights_bytes": view.loaded.weights_bytes if view.loaded else None,
        "predicted_weights_bytes": predicted_weights,
        "kv_cache_bytes_final": kv,
        "peak_allocated_bytes": alloc.value if alloc is not None else None,
        "peak_reserved_bytes": reserved,
        "peak_nvml_process_bytes": nvml,
        # the process's GPU memory outside torch's allocator: the CUDA context and what
        # the communication library (NCCL) holds for this rank
        "outside_allocator_bytes": nvml - reserved if nvml and reserved else None,
        "memory_source": env.memory_source,
    }


def imbalance(ranks: list[dict[str, Any]], replicated_bytes: int | None) -> dict[str, Any]:
    """Which rank peaks highest and by how much over the lowest, and why ranks differ:
    every rank holds the replicated parameters whole; an uneven split leaves some ranks
    a row more."""
    peaks = [(r["peak_allocated_bytes"], r["rank"]) for r in ranks if r["peak_allocated_bytes"]]
    weights = {r["weights_bytes"] for r in ranks if r["weights_bytes"] is not None}
    why = []
    if replicated_bytes and len(ranks) > 1:
        why.append(f"{replicated_bytes} bytes replicated on every rank (norms, buffers, "
                   "parameters the plan leaves whole)")  # fmt: skip
    if len(weights) > 1:
        why.append("uneven split: a sharded size not divisible by the ranks (torch.chunk)")
    return {
        "highest_peak_rank": max(peaks)[1] if peaks else None,
        "peak_spread_bytes": max(peaks)[0] - min(peaks)[0] if peaks else None,
        "weights_spread_bytes": max(weights) - min(weights) if weights else None,
        "why": why,
    }


def tp_summary(
    views: dict[int, SessionView],
    launch: dict[str, Any],
    predicted: dict[int, int] | None = None,
    replicated_bytes: int | None = None,
) -> dict[str, Any]:
    """The lowest rank's summary with every rank of this node under `tensor_parallel`."""
    lead = views[min(views)]
    out = summary(lead)
    ranks = [rank_entry(views[r], (predicted or {}).get(r)) for r in sorted(views)]
    out[KEY] = {
        **launch,
        "replicated_bytes": replicated_bytes,
        "ranks": ranks,
        "imbalance": imbalance(ranks, replicated_bytes),
    }
    return out


def merge(saved: list[dict[str, Any]]) -> dict[str, Any]:
    """Several nodes' summaries of one run as one: the lowest rank's summary, every rank.
    UsageError for files of different runs, or a rank twice."""
    parts = [s for s in saved if KEY in s]
    if len(parts) != len(saved):
        raise UsageError("only tensor-parallel summaries (--tp) merge by rank")
    sizes = {(s[KEY].get("tp"), s.get("model")) for s in parts}
    if len(sizes) > 1:
        raise UsageError("these summaries are of different runs (model or --tp differ)")
    ranks: dict[int, dict[str, Any]] = {}
    for part in parts:
        for entry in part[KEY]["ranks"]:
            if entry["rank"] in ranks:
                raise UsageError(f"rank {entry['rank']} is in more than one file")
            ranks[entry["rank"]] = entry
    lead = min(parts, key=lambda s: min(e["rank"] for e in s[KEY]["ranks"]))
    merged = dict(lead)
    table = [ranks[r] for r in sorted(ranks)]
    replicated = lead[KEY].get("replicated_bytes")
    merged[KEY] = {**lead[KEY], "ranks": table, "imbalance": imbalance(table, replicated)}
    merged[KEY]["nodes"] = sorted({e["node_rank"] for e in table if e["node_rank"] is not None})
    return merged
