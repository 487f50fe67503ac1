"""Pick a saved session from the sessions folder (the summary's "compare with…")."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from vramtui.tui.storage import display_path

SHOWN = 200  # the newest sessions listed


def saved_sessions(folder: Path, exclude: Path | None = None) -> list[Path]:
    """The sessions' JSON files in `folder`, newest first (their names start with the time)."""
    if not folder.is_dir():
        return []
    found = sorted(folder.glob("*.json"), key=lambda p: p.name, reverse=True)
    return [p for p in found if exclude is None or p.resolve() != exclude.resolve()][:SHOWN]


class PickSessionScreen(ModalScreen[Path | None]):
    DEFAULT_CSS = """
    PickSessionScreen { align: center middle; }
    PickSessionScreen #pick { width: 80%; max-width: 100; height: 80%; border: round $primary;
                              background: $surface; padding: 0 1; }
    PickSessionScreen #pick-title { text-style: bold; margin-bottom: 1; }
    PickSessionScreen OptionList { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, folder: Path, exclude: Path | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.paths = saved_sessions(folder, exclude)

    def compose(self) -> ComposeResult:
        with Vertical(id="pick"):
            where = display_path(self.folder)
            if self.paths:
                yield Static(f"Compare with… (sessions in {where})", id="pick-title")
                yield OptionList(*(Option(p.stem, id=str(n)) for n, p in enumerate(self.paths)))
            else:
                yield Static(f"No saved sessions in {where} yet (esc)", id="pick-title")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.paths[int(event.option.id or 0)])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
