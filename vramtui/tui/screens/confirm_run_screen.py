"""Run a CPU run predicted not to fit the RAM available? The start screen asks first.

Out of RAM a CPU run can stall the machine or have the system's OOM killer end another
program, so Run on such a run shows the prediction against what is available and
waits for a yes (y or the button) or a no (n, Esc or the button).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from vramtui.predict.fit_forecast import FitCheck
from vramtui.units import format_bytes


def confirm_text(name: str, check: FitCheck) -> str:
    """The question, `name` the model as the run names it (with its quantization)."""
    need, free = format_bytes(check.need_bytes, 2), format_bytes(check.free_bytes, 2)
    return f"{name}: predicted peak RSS {need}, RAM available {free} — run anyway?"


class ConfirmRunScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmRunScreen { align: center middle; }
    ConfirmRunScreen #dialog {
        width: 76; max-width: 100%; height: auto; padding: 1 2;
        border: round $error; background: $surface;
    }
    ConfirmRunScreen #buttons { height: auto; margin-top: 1; }
    ConfirmRunScreen Button { margin-right: 2; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Run anyway"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button("Run anyway (y)", id="yes", variant="error", compact=True)
                yield Button("Cancel (n)", id="no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter on the dialog does not start it

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
