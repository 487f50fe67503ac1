"""The start screen's model list: the catalogue grouped by family, filtered by a text;
planning for a card, each model's mark against it in place of its parameter count."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import DataTable

from vramtui.analysis.card_plan import CatalogueMark
from vramtui.models.catalogue import Entry, families
from vramtui.units import format_count


class ModelTable(DataTable[Text | str]):
    """Each family's name on its first row; `shown` the rows' model names, as filtered."""

    def __init__(self, model: str, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)
        self.wanted = model  # the model highlighted when the rows are first shown
        self.shown: list[str] = []
        self.text = ""  # the filter
        self.plan: str | None = None  # the card planned for: its column's title
        self.marks: Mapping[str, CatalogueMark] = {}
        self.pending = False  # newer marks are on their way: these are dimmed

    def show_models(self, text: str) -> None:
        """The catalogue models that match `text`; the highlighted one stays so if shown."""
        current = self.model() if self.shown else self.wanted
        self.text = text
        last = self.plan or "params"
        if [str(c.label) for c in self.columns.values()][-1:] != [last]:
            self.clear(columns=True)
            self.add_columns("family", "model", last)
        self.clear()
        self.shown = []
        for family, entries in families().items():
            shown = [e for e in entries if e.matches(text)]
            for n, entry in enumerate(shown):
                label = Text(family if n == 0 else "", style="dim")
                self.add_row(label, entry.name, self._last_cell(entry), key=entry.name)
                self.shown.append(entry.name)
        if current in self.shown:
            self.move_cursor(row=self.shown.index(current))

    def _last_cell(self, entry: Entry) -> Text:
        if self.plan is None:
            return Text(format_count(entry.params), justify="right")
        mark = self.marks.get(entry.name)
        return Text(mark.text if mark else "", style="dim" if self.pending else "")

    def show_plan(
        self, title: str | None, marks: Mapping[str, CatalogueMark], pending: bool = False
    ) -> None:
        """Each model's mark for the card `title` (None: the parameter counts again);
        `pending`: newer marks are on their way."""
        self.plan, self.marks, self.pending = title, marks, pending
        self.show_models(self.text)

    def mark_text(self, model: str) -> str:
        """What the last column shows for `model`."""
        return str(self.get_cell(model, self.ordered_columns[-1].key))

    def model(self) -> str:
        """The highlighted model ('' when the filter leaves none)."""
        if not self.shown:
            return ""
        row = self.cursor_row
        return self.shown[row] if 0 <= row < len(self.shown) else self.shown[0]
