"""The app on saved sessions only (`vramtui compare A B --app`): the compare screen."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import App
from textual.binding import Binding

from vramtui.analysis.run_comparison import Compared
from vramtui.tui.screens.compare_screen import CompareScreen


class CompareApp(App[int]):
    TITLE = "vramtui"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, items: Sequence[Compared]) -> None:
        super().__init__()
        self.items = list(items)

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self.items))
