"""Saved sessions overlaid on one token axis, one colour each; `v` steps through the series.

Reached by `vramtui compare A B --app`, or from the summary screen ("compare with…").
The sessions are finished: the screen draws once per change of series, visibility or size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static

from vramtui.analysis.run_comparison import Compared, differences, labelled
from vramtui.errors import UsageError
from vramtui.measure.session import SessionView
from vramtui.report.comparison_text import change
from vramtui.report.saved import load_view
from vramtui.tui.compare_plot import (
    SERIES_NAMES,
    available_series,
    build_compare_data,
    compare_axis,
    series_points,
    session_color,
    session_marker,
)
from vramtui.tui.screens.keys import ExplainedKeysScreen
from vramtui.tui.widgets.header import ScreenHeader
from vramtui.tui.widgets.memory_plot import MemoryPlot
from vramtui.units import format_bytes

MAX_TOGGLES = 9  # sessions 1..9 can be shown and hidden by their number


def series_peak(item: Compared, series: str, axis: str = "tokens") -> int | None:
    """The highest point of the session's line; without per-step samples (a JSON without
    its CSV, a bench cell), the peak its file saved."""
    values = [v for _, v in series_points(item.view, series, axis)]
    if values:
        return max(values)
    saved = item.view.peaks.get(series)
    return saved.value if saved else None


def legend(items: Sequence[Compared], series: str, shown: Sequence[bool], color: bool) -> Text:
    """Each session: its number and label in its colour, its peak of `series`, the change."""
    text = Text()
    axis = compare_axis(items)
    base = series_peak(items[0], series, axis)
    for n, item in enumerate(items):
        r, g, b = session_color(n)
        mark = "■" if color else session_marker(n)
        style = f"rgb({r},{g},{b})" if color else ""
        dim = "" if shown[n] else " dim"
        text.append(f"{mark} [{n + 1}] ", style=(style + dim).strip() or None)
        text.append(item.label + "\n", style="bold" + dim)
        peak = series_peak(item, series, axis)
        line = f"    peak {format_bytes(peak, 2)}" if peak is not None else "    no figures"
        if n and peak is not None:
            line += f"  {change(base, peak)}"
        if peak is not None and not series_points(item.view, series, axis):
            line += "\n    (its saved peak: no line)"
        if not shown[n]:
            line += "  (hidden)"
        text.append(line + "\n", style="dim" if not shown[n] else None)
    return text


class CompareScreen(ExplainedKeysScreen):
    DEFAULT_CSS = """
    CompareScreen #compare-main { height: 1fr; }
    CompareScreen #compare-plot { width: 1fr; height: 1fr; }
    CompareScreen #compare-side { width: 44; height: 1fr; padding: 0 1;
                                  border-left: vkey $primary 40%; }
    CompareScreen #compare-status { height: 1; padding: 0 1; background: $boost;
                                    text-style: bold; }
    """

    BINDINGS = [
        Binding("v", "next_series", "Series"),
        Binding("1", "toggle_session(0)", "Show/hide", key_display="1-9"),
        *(
            Binding(str(k), f"toggle_session({k - 1})", show=False)
            for k in range(2, MAX_TOGGLES + 1)
        ),
        Binding("escape", "close", "Back"),
    ]

    def __init__(self, items: Sequence[Compared]) -> None:
        super().__init__()
        self.items = list(items)
        self.series_list = available_series(self.items) or ["step_peak"]
        self.series = self.series_list[0]
        self.shown = [True] * len(self.items)
        self._drawn: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        with Horizontal(id="compare-main"):
            yield MemoryPlot(id="compare-plot")
            with VerticalScroll(id="compare-side"):
                yield Static("", id="compare-legend")
        yield Static("", id="compare-status")
        yield Footer()

    def on_mount(self) -> None:
        keys = ", ".join(differences([c.view for c in self.items])) or "no setting"
        self.sub_title = f"compare {len(self.items)} sessions · they differ in {keys}"
        self.call_after_refresh(self.redraw)

    def on_resize(self) -> None:
        self._drawn = None
        self.call_after_refresh(self.redraw)

    def redraw(self) -> None:
        plot = self.query_one("#compare-plot", MemoryPlot)
        key = (self.series, tuple(self.shown), plot.size)
        if key == self._drawn:
            return
        self._drawn = key
        plot.show(build_compare_data(self.items, self.series, self.shown, plot.buckets))
        color = not self.app.no_color
        self.query_one("#compare-legend", Static).update(
            legend(self.items, self.series, self.shown, color)
        )
        against = "step" if compare_axis(self.items) == "steps" else "token"
        status = f"{SERIES_NAMES[self.series]} against the {against} · v: next series"
        if not available_series(self.items):
            status = "no per-step samples (peaks only): `vramtui compare` prints their table"
        self.query_one("#compare-status", Static).update(status)

    def unavailable(self, action: str) -> str | None:
        if action == "next_series" and len(self.series_list) < 2:
            return f"these sessions have one series: {SERIES_NAMES[self.series]}"
        return None

    def action_next_series(self) -> None:
        n = self.series_list.index(self.series)
        self.series = self.series_list[(n + 1) % len(self.series_list)]
        self.redraw()

    def action_toggle_session(self, n: int) -> None:
        if n >= len(self.items):
            self.app.notify(f"there is no session {n + 1}", severity="warning", timeout=3)
            return
        self.shown[n] = not self.shown[n]
        self.redraw()

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()


def compare_with(app: App, view: SessionView, own: Path | None, other: Path | None) -> None:
    """The compare screen on this session and a saved one (nothing when none was picked)."""
    if other is None:
        return
    try:
        items = labelled([view, load_view(other)], [own, other])
    except UsageError as exc:
        app.notify(str(exc), severity="error", timeout=6)
        return
    app.push_screen(CompareScreen(items))
