"""`e`: export the run to a path the user types. An existing file is replaced only
after a second Enter on the same path."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from vramtui.measure.session import SessionView
from vramtui.tui.storage import check_targets, export, export_targets


class ExportScreen(ModalScreen[list[Path] | None]):
    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen #dialog {
        width: 76; max-width: 100%; height: auto; padding: 1 2;
        border: round $accent; background: $surface;
    }
    ExportScreen #hint { color: $text-muted; margin-top: 1; }
    ExportScreen #export-error { color: $error; height: auto; }
    """

    BINDINGS = [Binding("escape", "close", "Cancel")]

    def __init__(self, session: SessionView, suggestion: str) -> None:
        super().__init__()
        self.session = session
        self.suggestion = suggestion
        self._confirmed: list[Path] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Export this run to:")
            yield Input(self.suggestion, id="export-path")
            yield Static(
                "Enter writes NAME.csv and NAME.json; a name ending in .csv or .json writes "
                "that one file. Esc cancels.",
                id="hint",
            )
            yield Static("", id="export-error")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#export-path")
    def _changed(self) -> None:
        self._confirmed = None
        self.query_one("#export-error", Static).update("")

    @on(Input.Submitted, "#export-path")
    def _submit(self, event: Input.Submitted) -> None:
        error = self.query_one("#export-error", Static)
        if not event.value.strip():
            error.update("type a file name")
            return
        targets = export_targets(event.value)
        problem, existing = check_targets(targets)
        if problem:
            error.update(problem)
            return
        if existing and self._confirmed != targets:
            self._confirmed = targets
            names = ", ".join(str(p) for p in existing)
            error.update(f"{names} exists — press Enter again to replace it")
            return
        try:
            written = export(self.session, targets)
        except OSError as exc:
            error.update(f"cannot write: {exc.strerror or exc}")
            return
        self.dismiss(written)
