"""Memory against token index (or seconds), one line per series, on the widget's own plt."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from vramtui.tui.plotdata import (
    REFERENCE_COLOR,
    SERIES_COLORS,
    SERIES_MARKERS,
    PlotData,
    nice_ticks,
    tick_labels,
)

Y_LABEL_COLUMNS = 8  # what plotext's y tick labels and frame take from the width


class MemoryPlot(PlotextPlot):
    """Draws a PlotData. Building the figure is the costly part, so it is done
    only in `show()` (a few times a second at most) and the figure is kept."""

    DEFAULT_CSS = """
    MemoryPlot {
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.data: PlotData | None = None

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
        self._draw(data)
        self.refresh()

    def _draw(self, data: PlotData) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        no_color = self.app.no_color
        width, height = self.size.width, self.size.height
        plt.xlabel("token" if data.axis == "tokens" else "seconds")
        plt.xlim(0, data.x_max)
        plt.ylim(data.y_min, data.y_max)
        x_ticks = nice_ticks(0, data.x_max, max(width // 14, 2))
        plt.xticks(x_ticks, tick_labels(x_ticks, "" if data.axis == "tokens" else " s"))
        y_ticks = nice_ticks(data.y_min, data.y_max, max(height // 4, 2))
        plt.yticks(y_ticks, tick_labels(y_ticks, f" {data.unit}"))
        for x, _phase in data.phase_marks:
            plt.vline(x, "gray")
        if data.reference is not None:
            plt.hline(data.reference, REFERENCE_COLOR)
        lines = ([data.predicted] if data.predicted else []) + list(data.lines)
        for line in lines:
            if not line.xs:
                continue
            plt.plot(
                line.xs,
                line.ys,
                marker=SERIES_MARKERS[line.name] if no_color else "braille",
                color=SERIES_COLORS[line.name],
            )
        if data.empty:
            plt.title("waiting for the first sample")
