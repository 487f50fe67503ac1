"""Beside the plot: each series' current and peak figure; it is also the plot's legend."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vramtui.tui.plotdata import REFERENCE_COLOR, SERIES_COLORS, SERIES_MARKERS
from vramtui.tui.screen_text import SeriesRow, short_bytes


def _rgb(color: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*color)


class SeriesTable(Static):
    DEFAULT_CSS = """
    SeriesTable {
        height: auto;
    }
    """

    def show(
        self,
        rows: list[SeriesRow],
        device_total: int | None,
        total_drawn: bool,
        total_label: str = "device total",
        predicted: bool = False,
    ) -> None:
        no_color = self.app.no_color
        table = Table(box=None, padding=(0, 1, 0, 0), expand=True, show_edge=False)
        table.add_column("", width=2, no_wrap=True)
        table.add_column("series", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("now", justify="right", no_wrap=True)
        table.add_column("peak", justify="right", no_wrap=True)
        for row in rows:
            marker = (SERIES_MARKERS[row.name] if no_color else "■") + " "
            table.add_row(
                Text(marker, style=_rgb(SERIES_COLORS[row.name])), row.label, row.now, row.peak
            )
        if not rows:
            table.add_row("", Text("no samples yet", style="dim"), "", "")
        if predicted:
            key = Text(
                (SERIES_MARKERS["predicted"] if no_color else "■") + " ",
                style=_rgb(SERIES_COLORS["predicted"]),
            )
            table.add_row(key, Text("predicted", style="dim"), "", "")
        if device_total:
            rule = Text("─" if total_drawn else " ", style=_rgb(REFERENCE_COLOR))
            table.add_row(rule, total_label, "", short_bytes(device_total))
        self.update(table)
