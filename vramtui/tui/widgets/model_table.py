"""The start screen's model list: the catalogue grouped by family, filtered by a text."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from vramtui.models.catalogue import families
from vramtui.units import format_count


class ModelTable(DataTable[Text | str]):
    """Each family's name on its first row; `shown` the rows' model names, as filtered."""

    def __init__(self, model: str, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)
        self.wanted = model  # the model highlighted when the rows are first shown
        self.shown: list[str] = []

    def show_models(self, text: str) -> None:
        """The catalogue models that match `text`; the highlighted one stays so if shown."""
        current = self.model() if self.shown else self.wanted
        if not self.columns:
            self.add_columns("family", "model", "params")
        self.clear()
        self.shown = []
        for family, entries in families().items():
            shown = [e for e in entries if e.matches(text)]
            for n, entry in enumerate(shown):
                label = Text(family if n == 0 else "", style="dim")
                params = Text(format_count(entry.params), justify="right")
                self.add_row(label, entry.name, params, key=entry.name)
                self.shown.append(entry.name)
        if current in self.shown:
            self.move_cursor(row=self.shown.index(current))

    def model(self) -> str:
        """The highlighted model ('' when the filter leaves none)."""
        if not self.shown:
            return ""
        row = self.cursor_row
        return self.shown[row] if 0 <= row < len(self.shown) else self.shown[0]
