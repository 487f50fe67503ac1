"""A tensor-parallel run's ranks as text: one row per rank, then the imbalance."""

from __future__ import annotations

from typing import Any

from vramtui.measure.rank_summary import KEY
from vramtui.report.tables import table
from vramtui.units import format_bytes

HEADER = ("rank", "node", "status", "weights", "predicted", "KV cache", "peak alloc",
          "reserved", "NVML")  # fmt: skip


def _bytes(value: Any) -> str:
    return format_bytes(value, 2) if isinstance(value, int) else "—"


def ranks_text(saved: dict[str, Any]) -> str:
    """Every rank of a tensor-parallel summary (merged or one node's); '' for any other."""
    tp = saved.get(KEY)
    if not tp:
        return ""
    rows = [
        (str(r["rank"]), str(r.get("node_rank", "")), str(r["status"]),
         _bytes(r.get("weights_bytes")), _bytes(r.get("predicted_weights_bytes")),
         _bytes(r.get("kv_cache_bytes_final")), _bytes(r.get("peak_allocated_bytes")),
         _bytes(r.get("peak_reserved_bytes")), _bytes(r.get("peak_nvml_process_bytes")))
        for r in tp["ranks"]
    ]  # fmt: skip
    source = next((r.get("memory_source") for r in tp["ranks"] if r.get("memory_source")), None)
    lines = [f"Tensor parallel: {tp.get('tp')} ranks, {len(rows)} recorded here", "",
             table(rows, HEADER)]  # fmt: skip
    if source:
        lines.append(f"peak alloc: {source}")
    imbalance = tp.get("imbalance") or {}
    if imbalance.get("highest_peak_rank") is not None:
        lines.append(
            f"highest peak: rank {imbalance['highest_peak_rank']}, "
            f"{_bytes(imbalance.get('peak_spread_bytes'))} over the lowest"
        )
    lines += [f"  why: {reason}" for reason in imbalance.get("why", [])]
    failed = [r for r in tp["ranks"] if r.get("failure")]
    lines += [f"rank {r['rank']} {r['status']}: {r['failure']}" for r in failed]
    return "\n".join(lines)
