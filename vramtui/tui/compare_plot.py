"""What the compare screen draws: one series of several sessions on one token axis.

Pure (no Textual): each session's line is cut down to the plot's width the way the
run screen's are (plotdata.downsample keeps each bucket's largest value), drawn in a
colour of its own and, without colour, a marker of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from vramtui.analysis.run_comparison import Compared
from vramtui.tui.plotdata import Line, PlotData, downsample, drop_flat_interior, pick_unit

# The series a comparison can show, in the order `v` steps through them.
COMPARE_SERIES = ("step_peak", "allocated", "reserved", "nvml_process", "kv_bytes")
SERIES_NAMES = {
    "step_peak": "per-step peak",
    "allocated": "allocated",
    "reserved": "reserved",
    "nvml_process": "NVML process",
    "kv_bytes": "KV cache",
}
SESSION_COLORS: tuple[tuple[int, int, int], ...] = (
    (80, 200, 120),
    (240, 120, 60),
    (90, 150, 250),
    (230, 90, 200),
    (230, 210, 70),
    (80, 210, 220),
    (200, 200, 200),
    (170, 120, 250),
    (250, 150, 150),
)
SESSION_MARKERS = ("+", "x", "o", "#", "*", "=", "%", "@", "&")


def session_color(n: int) -> tuple[int, int, int]:
    return SESSION_COLORS[n % len(SESSION_COLORS)]


def session_marker(n: int) -> str:
    return SESSION_MARKERS[n % len(SESSION_MARKERS)]


def available_series(items: Sequence[Compared]) -> list[str]:
    """The series at least one session has figures for."""
    return [name for name in COMPARE_SERIES if any(c.view.token_series(name) for c in items)]


def build_compare_data(
    items: Sequence[Compared], series: str, shown: Sequence[bool], buckets: int = 160
) -> PlotData:
    """`series` of every shown session on the token axis, each its own colour."""
    raw: list[tuple[int, list[float], list[int]]] = []
    for n, (item, visible) in enumerate(zip(items, shown, strict=True)):
        points = item.view.token_series(series) if visible else []
        xs, ys = drop_flat_interior(*downsample(points, buckets))
        if xs:
            raw.append((n, xs, ys))
    x_max = float(max((max(1, c.view.tokens_done) for c in items), default=1))
    if not raw:
        return PlotData("tokens", "B", 1.0, (), x_max, 0.0, 1.0, None)
    top = max(max(ys) for _, _, ys in raw)
    bottom = min(min(ys) for _, _, ys in raw)
    unit, scale = pick_unit(top)
    span = max(top - bottom, top * 0.02)
    lines = tuple(
        Line(series, xs, [y / scale for y in ys], session_color(n), session_marker(n))
        for n, xs, ys in raw
    )
    return PlotData(
        axis="tokens",
        unit=unit,
        scale=scale,
        lines=lines,
        x_max=x_max,
        y_min=max(0.0, bottom - 0.15 * span) / scale,
        y_max=(top + 0.08 * span) / scale,
        reference=None,
    )
