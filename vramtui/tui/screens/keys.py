"""Screens whose keys say why they do nothing, instead of doing nothing silently."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.screen import Screen


class ExplainedKeysScreen(Screen[None]):
    """A binding whose action cannot run now is shown dimmed in the footer, and
    pressing it gives a notice with the reason `unavailable(action)` returns."""

    def unavailable(self, action: str) -> str | None:
        """Why `action` cannot run now, or None when it can."""
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if self.unavailable(action) else True

    def on_key(self, event: events.Key) -> None:
        for binding in self.BINDINGS:
            if isinstance(binding, Binding):
                key, action = binding.key, binding.action
            else:
                key, action = binding[0], binding[1]
            if event.key in key.split(","):
                reason = self.unavailable(str(action))
                if reason:
                    self.app.notify(reason, severity="warning", timeout=3)
                return
