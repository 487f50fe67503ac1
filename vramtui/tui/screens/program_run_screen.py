"""The run screen on the user's own program: the plot, and the program's output below it.

Used by `vramtui profile --live` (tui/profile_app.py) and by the app's start screen
("your script"). The program's output lines come from the recorder's thread and are
taken by the screen on its redraw timer. A program that trains (it made an optimizer
and ran a step) is shown as `vramtui train` is: on the step axis (x: steps, then
tokens, then seconds), the status line counting steps, the breakdown in training's terms.
"""

from __future__ import annotations

import threading
from collections import deque

from textual.app import ComposeResult
from textual.widgets import Footer, RichLog

from vramtui.measure.session import SessionView
from vramtui.predict.estimator import Estimate
from vramtui.tui.plotdata import AXES
from vramtui.tui.run_state import ActiveRun
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.train_run_screen import show_train_breakdown, train_facts, train_status

LOG_LINES = 2000  # the program's output kept in the panel


class OutputBuffer:
    """Lines from the recorder's thread, taken by the screen on its redraw timer."""

    def __init__(self, keep: int = LOG_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def take(self) -> list[str]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines


class ProgramRunScreen(RunScreen):
    """The run screen, with the program's output below the plot and no prediction
    (vramtui did not choose the model, so it has nothing to predict from)."""

    DEFAULT_CSS = """
    ProgramRunScreen #program-log { height: 8; border-top: hkey $primary 40%; }
    """

    def __init__(self, run: ActiveRun, output: OutputBuffer, redraw_hz: float = 4.0) -> None:
        super().__init__(run, redraw_hz)
        self.output = output

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield RichLog(id="program-log", max_lines=LOG_LINES, wrap=True, markup=False)
            yield widget

    def estimate(self, view: SessionView) -> Estimate | None:
        return None

    def trains(self, session: SessionView) -> bool:
        """Whether the program trains; the first time it is seen, the step axis is
        added before the others and shown."""
        if session.train_loaded is None and not session.train_steps:
            return False
        if "steps" not in self.axes:
            self.axes = ("steps", *AXES)
            self.axis = "steps"
        return True

    def status_line(self, session: SessionView, now: float) -> str:
        if self.trains(session):
            return train_status(session, now, self.run.cancelling)
        return super().status_line(session, now)

    def facts(self, session: SessionView, room: int | None) -> str:
        if self.trains(session):
            return train_facts(session)
        return super().facts(session, room)

    def show_breakdown(self, session: SessionView, cpu: bool) -> None:
        if self.trains(session):
            show_train_breakdown(self, session)
        else:
            super().show_breakdown(session, cpu)

    def redraw(self) -> None:
        lines = self.output.take()
        if lines and self.is_mounted:
            log = self.query_one("#program-log", RichLog)
            for line in lines:
                log.write(line)
        super().redraw()
