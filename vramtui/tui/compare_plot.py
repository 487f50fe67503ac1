"""What the compare screen draws: one series of several sessions on one token axis (on
one step axis when every session is a training run's).

Pure (no Textual): each session's line is cut down to the plot's width the way the
run screen's are (plotdata.downsample keeps each bucket's largest value), drawn in a
colour of its own and, without colour, a marker of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from vramtui.analysis.run_comparison import Compared
from vramtui.measure.session import SessionView
from vramtui.runspec.train_spec import TrainSpec
from vramtui.tui.plotdata import Line, PlotData, downsample, drop_flat_interior, pick_unit
from vramtui.tui.train_view import step_series, steps_axis_end

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


def compare_axis(items: Sequence[Compared]) -> str:
    """steps when every session is a training run's, else tokens."""
    training = all(isinstance(c.view.spec, TrainSpec) for c in items)
    return "steps" if items and training else "tokens"


def series_points(view: SessionView, series: str, axis: str) -> Sequence[tuple[float, int]]:
    """One session's `series` on the axis: (token, bytes) or (step axis x, bytes)."""
    return step_series(view, series) if axis == "steps" else view.token_series(series)


def available_series(items: Sequence[Compared]) -> list[str]:
    """The series at least one session has figures for."""
    axis = compare_axis(items)
    return [n for n in COMPARE_SERIES if any(series_points(c.view, n, axis) for c in items)]


def build_compare_data(
    items: Sequence[Compared], series: str, shown: Sequence[bool], buckets: int = 160
) -> PlotData:
    """`series` of every shown session on the token (or step) axis, each its own colour."""
    axis = compare_axis(items)
    raw: list[tuple[int, list[float], list[int]]] = []
    for n, (item, visible) in enumerate(zip(items, shown, strict=True)):
        points = series_points(item.view, series, axis) if visible else []
        xs, ys = drop_flat_interior(*downsample(points, buckets))
        if xs:
            raw.append((n, xs, ys))
    if axis == "steps":
        x_max = max((steps_axis_end(c.view) for c in items), default=1.0)
    else:
        x_max = float(max((max(1, c.view.tokens_done) for c in items), default=1))
    if not raw:
        return PlotData(axis, "B", 1.0, (), x_max, 0.0, 1.0, None)
    top = max(max(ys) for _, _, ys in raw)
    bottom = min(min(ys) for _, _, ys in raw)
    unit, scale = pick_unit(top)
    span = max(top - bottom, top * 0.02)
    lines = tuple(
        Line(series, xs, [y / scale for y in ys], session_color(n), session_marker(n))
        for n, xs, ys in raw
    )
    return PlotData(
        axis=axis,
        unit=unit,
        scale=scale,
        lines=lines,
        x_max=x_max,
        y_min=max(0.0, bottom - 0.15 * span) / scale,
        y_max=(top + 0.08 * span) / scale,
        reference=None,
    )
