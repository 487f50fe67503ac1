"""Messages the worker thread posts to the app (post_message is thread-safe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from vramtui.tui.run_state import ActiveRun


class RunFinished(Message):
    """The engine has ended (completed, failed or cancelled) and the session is final."""

    def __init__(self, run: ActiveRun, error: str | None = None) -> None:
        super().__init__()
        self.run = run
        self.error = error
