"""What the memory plot shows, computed from a Session without Textual.

The plot is redrawn a few times a second while the engine generates, so the
data is bounded first: each series is cut down to a fixed number of x buckets
(about the plot's width), keeping the largest value of each bucket so that a
peak can never fall between two drawn points.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from vramtui.measure.session import SessionView
from vramtui.runspec.program_spec import ProgramSpec, tokens_requested
from vramtui.tui.train_view import step_marks, step_series, steps_axis_end

# Drawn in this order, so the later (usually larger) series stay visible on top.
PLOT_SERIES = ("allocated", "step_peak", "reserved", "nvml_process")
# Shown in this order beside the plot and in the summary.
TABLE_SERIES = ("nvml_process", "reserved", "allocated", "step_peak")
AXES = ("tokens", "seconds")
TRAIN_AXES = ("steps", "seconds")  # a training session: memory within each step

SERIES_COLORS: dict[str, tuple[int, int, int]] = {
    "nvml_process": (230, 90, 200),
    "reserved": (90, 150, 250),
    "allocated": (80, 200, 120),
    "step_peak": (240, 170, 60),
    "predicted": (150, 150, 150),
}
REFERENCE_COLOR = (220, 60, 60)
# Markers where there is no colour to tell the lines apart (NO_COLOR).
SERIES_MARKERS = {
    "nvml_process": "#",
    "reserved": "=",
    "allocated": "+",
    "step_peak": ".",
    "predicted": "~",
}
# The device total is drawn when it is at most this many times the data's max.
REFERENCE_IN_VIEW = 2.0


@dataclass(frozen=True)
class Line:
    name: str
    xs: list[float]
    ys: list[float]  # in the plot's unit
    color: tuple[int, int, int] | None = None  # None: the series' colour (SERIES_COLORS)
    marker: str | None = None  # None: the series' marker (SERIES_MARKERS)


@dataclass(frozen=True)
class PlotData:
    axis: str  # tokens | seconds
    unit: str  # GB, MB, kB, B
    scale: float  # bytes per unit
    lines: tuple[Line, ...]
    x_max: float
    y_min: float  # the y axis, in the unit: zoomed on the data, so growth shows
    y_max: float
    reference: float | None  # the device total, in the unit, when in view
    phase_marks: tuple[tuple[float, str], ...] = ()  # (seconds, phase) on the seconds axis
    predicted: Line | None = None  # the estimator's step peak over the whole budget

    @property
    def empty(self) -> bool:
        return not any(line.xs for line in self.lines)


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10 * power


def nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Round tick values across [lo, hi], about `count` of them."""
    if hi <= lo:
        return [lo]
    step = nice_step((hi - lo) / max(count, 1))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def tick_labels(ticks: list[float], suffix: str = "") -> list[str]:
    """As few decimals as the step needs: 0, 500, 1000 / 2.6, 2.8 / 0.25, 0.50."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0 if step >= 1 else min(-math.floor(math.log10(step) + 1e-9) + 1, 4)
    if decimals and all(
        abs(t * 10 ** (decimals - 1) - round(t * 10 ** (decimals - 1))) < 1e-6 for t in ticks
    ):
        decimals -= 1
    return [f"{t:.{decimals}f}{suffix}" for t in ticks]


def pick_unit(max_bytes: float) -> tuple[str, float]:
    """The decimal unit that keeps the axis numbers short: GB, MB, kB or B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if max_bytes >= scale:
            return unit, scale
    return "B", 1.0


def downsample(points: Sequence[tuple[float, int]], buckets: int) -> tuple[list[float], list[int]]:
    """At most `buckets` points: the largest value of each equal slice of x.

    The point kept is the one where the maximum is (its own x), so peaks and
    where they happen survive. The work is one pass to split the pairs, then
    C-speed `max` over slices.
    """
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    n = len(xs)
    if n <= buckets or buckets < 2:
        return xs, ys
    lo, hi = xs[0], xs[-1]
    if hi <= lo:
        top = max(ys)
        return [xs[ys.index(top)]], [top]
    out_x: list[float] = []
    out_y: list[int] = []
    start = 0
    step = (hi - lo) / buckets
    for k in range(1, buckets + 1):
        end = n if k == buckets else bisect_left(xs, lo + step * k, start)
        if end > start:
            top = max(ys[start:end])
            i = ys.index(top, start, end)
            out_x.append(xs[i])
            out_y.append(top)
            start = end
    if out_x[-1] != xs[-1]:  # keep the newest reading: the line ends where the run is
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y


def phase_labels(
    marks: Sequence[tuple[float, str]], x_max: float, columns: int
) -> list[tuple[float, str]]:
    """One label per phase line, at its x; lines closer than their label's width are
    labelled together ('load·prefill'), at the first of them, so no label overlaps."""
    if not marks or x_max <= 0 or columns <= 0:
        return []
    per_column = x_max / columns
    out: list[tuple[float, str]] = []
    for x, name in marks:
        if out and (x - out[-1][0]) / per_column < len(out[-1][1]) + 1:
            out[-1] = (out[-1][0], f"{out[-1][1]}·{name}")
        else:
            out.append((x, name))
    return out


def drop_flat_interior(xs: list[float], ys: list[int]) -> tuple[list[float], list[int]]:
    """The same polyline without the inner points of runs of equal y.

    A straight line from the first to the last point of a flat run covers every
    point between them, so the drawing is unchanged; memory is mostly flat
    between steps, and each point kept costs the plot a line segment to draw.
    """
    n = len(ys)
    if n <= 2:
        return xs, ys
    keep = [0] + [i for i in range(1, n - 1) if ys[i] != ys[i - 1] or ys[i] != ys[i + 1]]
    keep.append(n - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _series(session: SessionView, name: str, axis: str) -> Sequence[tuple[float, int]]:
    if axis == "tokens":
        return session.token_series(name)
    if axis == "steps":
        return step_series(session, name)
    return session.time_series(name)


def _x_axis(
    view: SessionView, axis: str, now: float | None
) -> tuple[float, tuple[tuple[float, str], ...]]:
    """The x axis's end, and the phase lines (a program's generate() calls on the token
    axis, a training step's phases on the step axis)."""
    if axis == "tokens":
        requested = tokens_requested(view.spec)
        return float(max(requested, 1, view.tokens_done)), generation_marks(view)
    if axis == "steps":
        return steps_axis_end(view), step_marks(view)
    marks = tuple(
        (p.t - view.t0, p.name) for p in view.phases if p.name in ("load", "prefill", "decode")
    )
    return max(view.elapsed(now), 1.0), marks


def generation_marks(view: SessionView) -> tuple[tuple[float, str], ...]:
    """A profiled program's generate() calls on the token axis: #k at each first token
    (a call's first step is its prefill). None for vramtui's own runs: one call."""
    if not isinstance(view.spec, ProgramSpec):
        return ()
    starts = (s.token for s in view.token_samples if s.phase == "prefill")
    return tuple((float(t), f"#{k}") for k, t in enumerate(starts) if t is not None)


def build_plot_data(
    session: SessionView,
    *,
    axis: str = "tokens",
    buckets: int = 160,
    now: float | None = None,
    predicted: list[tuple[int, int]] | None = None,
) -> PlotData:
    """Everything the plot draws, each series at most `buckets` points long.

    `predicted` (token or step, bytes) is drawn on the token and step axes only, and
    counts in the axis range so the whole predicted curve is in view from the start.
    """
    raw: dict[str, tuple[list[float], list[int]]] = {}
    top, bottom = 0, None
    series = [(name, _series(session, name, axis)) for name in PLOT_SERIES]
    if predicted and axis != "seconds":
        series.append(("predicted", predicted))
    for name, points in series:
        xs, ys = drop_flat_interior(*downsample(points, buckets))
        if xs:
            raw[name] = (xs, ys)
            top = max(top, max(ys))
            low = min(ys)
            bottom = low if bottom is None else min(bottom, low)
    total = session.device_total()
    reference = total if total and top and total <= REFERENCE_IN_VIEW * top else None
    high = max(top, reference or 0)
    unit, scale = pick_unit(high)
    lines = tuple(Line(name, xs, [y / scale for y in ys]) for name, (xs, ys) in raw.items())
    predicted_line = next((line for line in lines if line.name == "predicted"), None)
    lines = tuple(line for line in lines if line.name != "predicted")
    x_max, marks = _x_axis(session, axis, now)
    if bottom is None:
        y_min, y_max = 0.0, 1.0
    else:
        span = max(high - bottom, high * 0.02)
        y_min = max(0.0, bottom - 0.15 * span) / scale
        y_max = (high + 0.08 * span) / scale
    return PlotData(
        axis=axis,
        unit=unit,
        scale=scale,
        lines=lines,
        x_max=x_max,
        y_min=y_min,
        y_max=y_max,
        reference=reference / scale if reference else None,
        phase_marks=marks,
        predicted=predicted_line,
    )
