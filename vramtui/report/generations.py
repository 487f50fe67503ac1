"""A profiled program's generate() calls as a text table (`vramtui profile`, `show`)."""

from __future__ import annotations

from typing import Any

from vramtui.units import format_bytes


def generation_rows(generations: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row a generate() call: what it ran, on what, and its peak."""
    rows: list[tuple[str, ...]] = []
    for g in generations:
        beams = g.get("num_beams") or 1
        shape = f"{g['batch']} × {beams} beams" if beams > 1 else f"{g['batch']}"
        seconds = g["t_end_s"] - g["t_start_s"]
        rows.append(
            (
                str(g["index"]),
                f"{g['model_class']} ({g['params']:,} params)",
                shape,
                str(g["prompt_tokens"]),
                str(g["tokens_generated"]),
                format_bytes(g.get("peak_allocated_bytes"), 2),
                f"{g['t_start_s']:.2f}–{g['t_end_s']:.2f} s ({seconds:.2f} s)",
                g.get("status", ""),
            )
        )
    return rows


GENERATION_HEADER = ("#", "model", "batch", "prompt", "new", "peak allocated", "when", "status")
