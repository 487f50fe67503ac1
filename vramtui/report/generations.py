"""A profiled program's generate() calls as a text table (`vramtui profile`, `show`)."""

from __future__ import annotations

from collections.abc import Sequence

from vramtui.measure import events as ev
from vramtui.units import format_bytes


def generation_rows(generations: Sequence[ev.Generation]) -> list[tuple[str, ...]]:
    """One row a generate() call (its times: seconds since the start): what it ran, on
    what, and its peak."""
    rows: list[tuple[str, ...]] = []
    for g in generations:
        beams = g.num_beams or 1
        shape = f"{g.batch} × {beams} beams" if beams > 1 else f"{g.batch}"
        seconds = g.t_end - g.t_start
        rows.append(
            (
                str(g.index),
                f"{g.model_class} ({g.params:,} params)",
                shape,
                str(g.prompt_tokens),
                str(g.tokens_generated),
                format_bytes(g.peak_allocated_bytes, 2),
                f"{g.t_start:.2f}–{g.t_end:.2f} s ({seconds:.2f} s)",
                g.status,
            )
        )
    return rows


GENERATION_HEADER = ("#", "model", "batch", "prompt", "new", "peak allocated", "when", "status")
