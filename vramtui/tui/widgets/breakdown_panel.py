"""Where the bytes are: the measured breakdown as a stacked bar and rows, and the OOM forecast."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vramtui.tui.prediction import COMPONENT_COLORS, COMPONENT_MARKERS
from vramtui.tui.screen_text import short_bytes

OTHER_COLOR = COMPONENT_COLORS["other allocated"]


def _style(label: str) -> str:
    return "rgb({},{},{})".format(*COMPONENT_COLORS.get(label, OTHER_COLOR))


def stacked_bar(rows: list[tuple[str, int]], width: int, no_color: bool) -> Text:
    """One line, each component as wide as its share (at least one cell when present)."""
    total = sum(value for _, value in rows)
    bar = Text()
    if total <= 0 or width <= 0:
        return bar
    cells = [max(1, round(width * value / total)) if value else 0 for _, value in rows]
    while sum(cells) > width:  # the minimum cells may overflow: take from the largest
        cells[cells.index(max(cells))] -= 1
    if sum(cells) < width:
        cells[cells.index(max(cells))] += width - sum(cells)
    for (label, _), n in zip(rows, cells, strict=True):
        char = COMPONENT_MARKERS.get(label, "o") if no_color else "█"
        bar.append(char * n, style=_style(label))
    return bar


class BreakdownPanel(Static):
    DEFAULT_CSS = """
    BreakdownPanel {
        height: auto;
    }
    """

    def show(
        self,
        title: str,
        rows: list[tuple[str, int]],
        total: tuple[str, int] | None,
        forecast: str,
        warn: bool,
    ) -> None:
        no_color = self.app.no_color
        parts: list[RenderableType] = [Text(title, style="bold")]
        if rows:
            parts.append(stacked_bar(rows, max(self.size.width, 10), no_color))
            table = Table(
                box=None, padding=(0, 1, 0, 0), expand=True, show_header=False, show_edge=False
            )
            table.add_column(width=2, no_wrap=True)
            table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
            table.add_column(justify="right", no_wrap=True)
            table.add_column(justify="right", no_wrap=True, width=4)
            whole = sum(value for _, value in rows) or 1
            for label, value in rows:
                marker = (COMPONENT_MARKERS.get(label, "o") if no_color else "■") + " "
                table.add_row(
                    Text(marker, style=_style(label)),
                    label,
                    short_bytes(value),
                    f"{100 * value / whole:.0f}%",
                )
            if total is not None:
                table.add_row("", Text(f"= {total[0]}", style="dim"), short_bytes(total[1]), "")
            parts.append(table)
        parts.append(Text(forecast, style="bold red" if warn else "dim"))
        self.update(Group(*parts))
