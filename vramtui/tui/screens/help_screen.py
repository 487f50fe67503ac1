"""`?`: every key of the app, with a sentence each."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str, str], ...] = (
    ("anywhere", "ctrl+p", "the command palette: Run, Cancel, Export, Graph, Summary, …"),
    ("anywhere", "?", "this list of keys"),
    ("anywhere", "s", "save an SVG screenshot of the screen beside the sessions"),
    ("anywhere", "q", "quit; a running engine is ended first and its session saved"),
    ("anywhere", "ctrl+c", "interrupt: cancel the run, save it and quit (exit code 130)"),
    ("start", "ctrl+r / Enter", "run with these settings, in a fresh engine process"),
    ("start", "Tab, shift+Tab", "move between the model list and the fields"),
    ("run", "c", "cancel the generation; what was measured is kept and saved"),
    ("run", "x", "the x axis: token index or seconds since start"),
    (
        "run",
        "d",
        "a model placed across devices: the next device for the graph, the "
        "breakdown and the out-of-memory forecast",
    ),
    ("run", "p", "the summary, once the run has ended"),
    ("run", "e", "export the run to a CSV and JSON you name, once it has ended"),
    ("run", "r", "run again: back to the start screen with the same settings"),
    ("summary", "g / Esc", "back to the graph"),
    ("summary", "e, r", "export; run again"),
    ("summary", "c", "compare with a saved session: both on one token axis"),
    ("compare", "v", "the next series: per-step peak, allocated, reserved, NVML, KV cache"),
    ("compare", "1-9", "show or hide that session's line"),
    ("compare", "Esc", "back (or quit, when the app was opened by vramtui compare)"),
)


def keys_table() -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("what it does")
    for where, key, what in KEYS:
        table.add_row(where, key, what)
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help {
        width: 90; max-width: 100%; height: auto; max-height: 100%;
        padding: 1 2; border: round $accent; background: $surface;
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("Keys — Esc or ? closes this", classes="title")
            yield Static(keys_table())

    def action_close(self) -> None:
        self.dismiss(None)
