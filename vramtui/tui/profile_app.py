"""The app on the user's own program (`vramtui profile --live`).

The run screen from the first frame, fed by a `Recorder` (`Recorder.for_program`) in the app's
worker thread exactly as an engine run is; the program's output (stdout and
stderr, captured line by line in the recorder's thread) goes into a log panel
below the plot. Generation boundaries are marked on the token axis (and each
load, prefill and decode on the seconds axis). When the program ends, the
summary screen follows and the session is saved, as for any run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events

from vramtui.runspec import RunSpec
from vramtui.tui.app import VramApp
from vramtui.tui.run_state import ActiveRun, RecorderLike
from vramtui.tui.screens.program_run_screen import OutputBuffer, ProgramRunScreen

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
        self.call_after_refresh(self.take_pending_interrupt)

    def action_run_again(self) -> None:
        self.notify("to profile the program again, run `vramtui profile` again")
