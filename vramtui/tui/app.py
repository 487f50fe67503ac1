"""The vramtui app: start screen -> run screen (live) -> summary.

A Textual worker thread runs the data source (`make_recorder(spec)`, by
default a fresh engine process through vramtui.recorder.Recorder), which
feeds the Session; the worker never touches a widget and posts one
RunFinished message when it is done. Screens redraw from the Session on a
timer. Clocks and the data source are injected so tests are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from vramtui import events as ev
from vramtui.devices import DeviceChoice, choices
from vramtui.errors import UsageError
from vramtui.spec import RunSpec
from vramtui.tui.messages import RunFinished
from vramtui.tui.run_state import ActiveRun, RecorderFactory, default_recorder
from vramtui.tui.screens.export import ExportScreen
from vramtui.tui.screens.run import RunScreen
from vramtui.tui.screens.start import StartScreen
from vramtui.tui.screens.summary import SummaryScreen
from vramtui.tui.storage import autosave, display_path, session_stem, sessions_dir

QUIT_GRACE_S = 10.0  # q waits this long for the engine to end before leaving anyway


class VramApp(App[int]):
    TITLE = "vramtui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("s", "screenshot", "Screenshot"),
    ]

    def __init__(
        self,
        spec: RunSpec | None = None,
        *,
        start: bool = False,
        out_dir: Path | None = None,
        make_recorder: RecorderFactory = default_recorder,
        list_devices: Callable[[], Iterable[DeviceChoice]] = choices,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = datetime.now,
        redraw_hz: float = 4.0,
    ) -> None:
        super().__init__()
        self.spec = spec or RunSpec()
        self.autostart = start
        self.out_dir = out_dir
        self.make_recorder = make_recorder
        self.list_devices = list_devices
        self.clock = clock
        self.wall_clock = wall_clock
        self.redraw_hz = redraw_hz
        self.current: ActiveRun | None = None
        self.runs: list[ActiveRun] = []
        self._quitting = False

    @property
    def save_dir(self) -> Path:
        return self.out_dir if self.out_dir is not None else sessions_dir()

    def on_mount(self) -> None:
        self.push_screen(StartScreen(self.spec, autostart=self.autostart))

    # ---- a run -----------------------------------------------------------------------
    def begin(self, spec: RunSpec) -> None:
        """Start a run of `spec` (already validated). A UsageError goes back to the form."""
        if self.current is not None and self.current.running:
            raise UsageError("a run is in progress; cancel it first")
        recorder = self.make_recorder(spec)
        run = ActiveRun(spec, recorder)
        self.current = run
        self.runs.append(run)
        self.push_screen(RunScreen(run, self.redraw_hz))
        self._drive(run)

    @work(thread=True, group="engine", exit_on_error=False)
    def _drive(self, run: ActiveRun) -> None:
        """The worker: blocks in the recorder until the engine has ended."""
        error: str | None = None
        try:
            run.recorder.run()
        except Exception as exc:  # noqa: BLE001 - shown on the summary, never a crash
            error = f"{type(exc).__name__}: {exc}"
        self.post_message(RunFinished(run, error))

    def on_run_finished(self, message: RunFinished) -> None:
        run = message.run
        session = run.session
        if message.error is not None:
            session.fail(ev.Failed("crashed", message.error, session.current_phase))
        run.ended = True
        try:
            run.saved = autosave(session, self.save_dir, self.wall_clock())
        except OSError as exc:
            run.save_error = f"{exc.strerror or exc} ({self.save_dir})"
            self.notify(f"could not save the session: {run.save_error}", severity="error")
        if self._quitting:
            self.exit(0)
            return
        failure = session.failure
        if failure is not None and failure.kind == "usage" and not session.tokens_done:
            self._back_to_start(run.spec, failure.message)
            return
        self.screen.refresh_bindings()
        if isinstance(self.screen, RunScreen) and self.screen.run is run:
            self.push_screen(SummaryScreen(run))

    def cancel_run(self) -> None:
        run = self.current
        if run is None or not run.running or run.cancelling:
            return
        run.cancelling = True
        self.notify("cancelling the run…", timeout=2)
        # Recorder.cancel() waits for the engine to end: not on the UI thread.
        self.run_worker(run.recorder.cancel, thread=True, group="cancel")

    # ---- actions -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        """q: end any engine process first (its session is still saved), then leave."""
        run = self.current
        if run is None or not run.running or self._quitting:
            self.exit(0)
            return
        self._quitting = True
        self.cancel_run()
        self.notify("stopping the engine before quitting…", timeout=QUIT_GRACE_S)
        self.set_timer(QUIT_GRACE_S, lambda: self.exit(0))

    def on_unmount(self) -> None:
        run = self.current
        if run is not None and run.running:
            run.recorder.cancel()

    def action_summary(self) -> None:
        run = self.current
        if run is not None and not run.running:
            self.push_screen(SummaryScreen(run))

    def action_run_again(self) -> None:
        run = self.current
        if run is not None and run.running:
            self.notify("cancel the run first (c)", severity="warning")
            return
        self._back_to_start(run.spec if run else self.spec)

    def _back_to_start(self, spec: RunSpec, error: str | None = None) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        start = StartScreen(spec)
        self.push_screen(start)
        if error:
            self.call_after_refresh(start.show_error, error)

    def action_export(self) -> None:
        run = self.current
        if run is None or run.running:
            return
        stem = session_stem(run.session, self.wall_clock())
        suggestion = f"vramtui-{stem}"  # in the folder vramtui was started from

        def done(paths: list[Path] | None) -> None:
            if paths:
                self.notify("exported " + ", ".join(display_path(p) for p in paths))

        self.push_screen(ExportScreen(run.session, suggestion), done)

    def action_screenshot(self) -> None:
        folder = self.save_dir
        session = self.current.session if self.current else None
        name = f"{session_stem(session, self.wall_clock())}-{type(self.screen).__name__}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = self.save_screenshot(filename=name, path=str(folder))
        except OSError as exc:
            self.notify(f"screenshot not saved: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"screenshot saved to {display_path(Path(path))}")
