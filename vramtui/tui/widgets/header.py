"""Textual's Header, made safe to remove at any time and not kept alive once removed.

Textual's Header has two faults that a long session of runs meets:

- it queues an update of its title on mount and whenever a title changes; if its
  screen is popped before that update runs (`r` pressed the instant a run ends
  pops the summary while it is still mounting), its HeaderTitle child is already
  gone and the NoMatches that follows takes the app down;
- it watches the *app's* title and sub-title, and Textual drops such a watcher
  only when that attribute next changes: vramtui never changes them, so every
  header ever shown, with its rendering caches, stayed alive (a leak per screen).

This one updates its title only while it still has one, and watches its own
screen's title and sub-title alone (those watchers go with the screen). The
app's title and sub-title are read at each update: vramtui sets them once.
"""

from __future__ import annotations

from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.events import Mount
from textual.widget import Widget
from textual.widgets import Header
from textual.widgets._header import HeaderTitle


class ScreenHeader(Header):
    def _on_mount(self, event: Mount) -> None:
        # Header._on_mount would register its own watchers (see above): not called.
        event.prevent_default()
        Widget._on_mount(self, event)

        async def set_title() -> None:
            try:
                self.query_one(HeaderTitle).update(self.format_title())
            except (NoScreen, NoMatches):  # being removed: its children went first
                pass

        self.watch(self.screen, "title", set_title)
        self.watch(self.screen, "sub_title", set_title)
