"""Memory against token index (or seconds), one line per series, on the widget's own plt."""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.strip import Strip
from textual_plotext import PlotextPlot

from vramtui.tui.plotdata import (
    REFERENCE_COLOR,
    SERIES_COLORS,
    SERIES_MARKERS,
    PlotData,
    nice_ticks,
    phase_labels,
    tick_labels,
)
from vramtui.tui.widgets.plot_canvas import matrix_strips, matrix_text
from vramtui.tui.widgets.plot_lines import Series, draw_series, frame_signal

Y_LABEL_COLUMNS = 8  # what plotext's y tick labels and frame take from the width
WAITING = "waiting for the first sample…"
X_LABELS = {"tokens": "token", "seconds": "seconds", "steps": "step"}


class MemoryPlot(PlotextPlot):
    """Draws a PlotData. Setting up the figure is done only in `show()` (a few
    times a second at most); the canvas is built once per figure and size and
    kept for every later frame: plotext lays out the frame, ticks and labels,
    plot_lines draws the data lines into it (plotext's own drawing, faster)."""

    DEFAULT_CSS = """
    MemoryPlot {
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.data: PlotData | None = None
        self._version = 0  # bumped by each show()
        self._canvas: tuple[tuple[object, ...], list[Strip]] | None = None
        self._series: list[Series] = []  # drawn by plot_lines after plotext's frame

    def on_unmount(self) -> None:
        # PlotextPlot subscribes to the app's theme signal and never unsubscribes: the
        # subscription's callback holds the widget, so every plot shown stayed alive.
        self.app.theme_changed_signal.unsubscribe(self)

    @property
    def buckets(self) -> int:
        """How many points a series needs to fill the plot: braille draws two per column."""
        columns = max(self.size.width - Y_LABEL_COLUMNS, 10)
        return columns if self.app.no_color else 2 * columns

    def show(self, data: PlotData) -> None:
        self.data = data
        self._version += 1
        self._draw(data)
        self.refresh()

    @property
    def waiting(self) -> bool:
        """No sample yet: a line of text instead of an axis with nothing on it."""
        return self.data is None or self.data.empty

    def render(self) -> RenderResult:
        """The figure as one Text (what PlotextPlot.render gives); frames use render_line."""
        if self.waiting:
            return Text(WAITING, style="dim")
        return matrix_text(self._build_matrix())

    def render_line(self, y: int) -> Strip:
        strips = self.canvas()
        if 0 <= y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def canvas(self, rebuild: bool = False) -> list[Strip]:
        """The figure's lines, built once per show() and size, then kept for every frame."""
        base = self.visual_style.rich_style
        key = (self._version, self.size, self.app.theme, self.theme, base)
        if rebuild or self._canvas is None or self._canvas[0] != key:
            if self.waiting:
                width, middle = self.size.width, self.size.height // 2
                line = WAITING.center(width)[:width]
                dim = base + Style(dim=True)
                strips = [
                    Strip([Segment(line if y == middle else " " * width, dim)], width)
                    for y in range(self.size.height)
                ]
                self._canvas = (key, strips)
            else:
                self._canvas = (key, matrix_strips(self._build_matrix(), base))
        return self._canvas[1]

    def _build_matrix(self) -> Any:
        """PlotextPlot.render() up to plotext's matrices, without the ANSI round trip."""
        plt, width, height = self.plt, self.size.width, self.size.height
        plt.plotsize(width, height)
        plt._set_size(width, height)  # as PlotextPlot.render does (textual-plotext issue 5)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt._set_sizes()
        plt._build_matrix()
        matrix = plt.monitor.matrix
        data = self.data
        if data is not None and self._series:
            draw_series(matrix, self._series, (0, data.x_max), (data.y_min, data.y_max))
        return matrix

    def _draw(self, data: PlotData) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        no_color = self.app.no_color
        width, height = self.size.width, self.size.height
        plt.xlabel(X_LABELS.get(data.axis, data.axis))
        plt.xlim(0, data.x_max)
        plt.ylim(data.y_min, data.y_max)
        x_ticks = nice_ticks(0, data.x_max, max(width // 14, 2))
        plt.xticks(x_ticks, tick_labels(x_ticks, " s" if data.axis == "seconds" else ""))
        y_ticks = nice_ticks(data.y_min, data.y_max, max(height // 4, 2))
        plt.yticks(y_ticks, tick_labels(y_ticks, f" {data.unit}"))
        for x, _ in data.phase_marks:
            plt.vline(x, "gray")
        columns = max(width - Y_LABEL_COLUMNS, 10)
        for x, label in phase_labels(data.phase_marks, data.x_max, columns):
            plt.text(label, x, data.y_max, color="gray", background="default", alignment="left")
        if data.reference is not None:
            plt.hline(data.reference, REFERENCE_COLOR)
        lines = ([data.predicted] if data.predicted else []) + list(data.lines)
        self._series = [
            Series(
                line.xs,
                line.ys,
                marker=(line.marker or SERIES_MARKERS[line.name]) if no_color else "braille",
                color=line.color or SERIES_COLORS[line.name],
            )
            for line in lines
            if line.xs
        ]
        frame_signal(plt, (0, data.x_max), (data.y_min, data.y_max))
