"""The app on the user's own program (`vramtui profile --live`).

The run screen from the first frame, fed by a `ScriptRecorder` in the app's
worker thread exactly as an engine run is; the program's output (stdout and
stderr, captured line by line in the recorder's thread) goes into a log panel
below the plot. Generation boundaries are marked on the token axis (and each
load, prefill and decode on the seconds axis). When the program ends, the
summary screen follows and the session is saved, as for any run.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer, RichLog

from vramtui.measure.session import SessionView
from vramtui.predict.estimate import Estimate
from vramtui.spec import RunSpec
from vramtui.tui.app import VramApp
from vramtui.tui.run_state import ActiveRun, RecorderLike
from vramtui.tui.screens.run import RunScreen

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

    def redraw(self) -> None:
        lines = self.output.take()
        if lines and self.is_mounted:
            log = self.query_one("#program-log", RichLog)
            for line in lines:
                log.write(line)
        super().redraw()


RecorderMaker = Callable[[Callable[[str], None]], RecorderLike]


class ProfileApp(VramApp):
    """The run screen on a program from launch; its exit code once it has ended."""

    def __init__(self, make_recorder: RecorderMaker, *, out_dir: Path | None, **options: Any):
        super().__init__(RunSpec(), out_dir=out_dir, **options)
        self.make_program_recorder = make_recorder
        self.output = OutputBuffer()

    def on_mount(self, event: events.Mount) -> None:
        event.prevent_default()  # not the start screen: the program is the run
        active = ActiveRun(self.spec, self.make_program_recorder(self.output.add))
        self.current = active
        self.runs_started = 1
        self.push_screen(ProgramRunScreen(active, self.output, self.redraw_hz))
        self._drive(active)

    def action_run_again(self) -> None:
        self.notify("to profile the program again, run `vramtui profile` again")
