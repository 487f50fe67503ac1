"""Line series drawn straight into plotext's matrix: what `plt.plot` draws, faster.

plotext draws a line plot in several Python passes over every dot of every
line (mapping to the canvas, segments between points, de-duplication, grouping
into braille cells, clipping): about 4 of the 5 ms of a 2000-token figure.
This does the same arithmetic in one pass per line: plotext's mapping of data
to canvas dots (`get_matrix_data`), its straight segments between consecutive
points (`get_line`), its braille cells (2 x 4 dots), dots outside the canvas
dropped, and each later line over the earlier ones cell by cell. The figure's
frame, ticks, labels and reference lines are still plotext's own; only the data
lines are drawn here, after plotext has laid out the canvas.
tests/test_tui_plot_lines.py holds the result to plotext's own drawing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plotext import _utility as ut

# Unicode braille: the bit of each dot, by (column, row from the bottom) in a cell.
BRAILLE_BITS = {
    (0, 3): 0x01,
    (0, 2): 0x02,
    (0, 1): 0x04,
    (0, 0): 0x40,
    (1, 3): 0x08,
    (1, 2): 0x10,
    (1, 1): 0x20,
    (1, 0): 0x80,
}
BRAILLE = "braille"


@dataclass(frozen=True)
class Series:
    xs: Sequence[float]
    ys: Sequence[float]
    marker: str  # "braille", or one character drawn once per cell
    color: Any  # as plotext takes it: a name, a 256-colour index or an (r, g, b) tuple


def _dots(values: Sequence[float], lo: float, hi: float, bins: int) -> list[int]:
    """plotext's get_matrix_data: the dot index of each value across `bins` dots."""
    span = hi - lo
    scale = (bins - 1) / span if span else 0.0
    out = []
    for v in values:
        n = (0.5 + scale * (v - lo)) * 1e8  # plotext rounds to 8 decimals, half up
        f = math.floor(n)
        out.append(math.floor((f if n - f < 0.5 else math.ceil(n)) * 1e-8))
    return out


def _segment_dots(xs: list[int], ys: list[int]) -> set[tuple[int, int]]:
    """Every dot of the straight segments between consecutive points (plotext's get_line)."""
    dots = {(xs[-1], ys[-1])} if xs else set()
    for i in range(len(xs) - 1):
        x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
        steps = max(abs(x1 - x0), abs(y1 - y0))
        if steps == 0:
            dots.add((x0, y0))
            continue
        sx, sy = (x1 - x0) / steps, (y1 - y0) / steps
        for k in range(steps):  # the segment's last dot is the next one's first
            dots.add((int(x0 + k * sx), int(y0 + k * sy)))
    return dots


def draw_series(
    matrix: Any, series: Sequence[Series], xlim: tuple[float, float], ylim: tuple[float, float]
) -> None:
    """Draw each series onto plotext's built matrix, in order, inside its canvas area."""
    cols, rows = matrix.Cols_canvas, matrix.Rows_canvas
    width, height = len(cols), len(rows)
    if not width or not height:
        return
    for line in series:
        if not len(line.xs):
            continue
        fx, fy = (2, 4) if line.marker == BRAILLE else (1, 1)
        xs = _dots(line.xs, xlim[0], xlim[1], width * fx)
        ys = _dots(line.ys, ylim[0], ylim[1], height * fy)
        cells: dict[tuple[int, int], int] = {}
        for x, y in _segment_dots(xs, ys):
            cell = (x // fx, y // fy)
            cells[cell] = cells.get(cell, 0) | BRAILLE_BITS.get((x % fx, y % fy), 0)
        for (cx, cy), bits in cells.items():
            if 0 <= cx < width and 0 <= cy < height:
                marker = chr(0x2800 + bits) if fx == 2 else line.marker
                col, row = cx + cols.start, cy + rows.start
                matrix.marker[row][col] = marker
                matrix.fullground[row][col] = line.color
                matrix.style[row][col] = ut.no_color


def frame_signal(plt: Any, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    """A one-point signal outside the limits, never drawn: without any signal
    plotext leaves out the axes' ticks and labels (it draws axes in use only)."""
    plt.plot([xlim[1] + abs(xlim[1] - xlim[0]) + 1], [ylim[1] + abs(ylim[1] - ylim[0]) + 1])
