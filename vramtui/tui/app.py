"""The vramtui app: start screen -> run screen (live) -> summary.

A Textual worker thread runs the data source (`make_recorder(run)`, by default
a fresh engine process through vramtui.measure.recorder.Recorder), which feeds
the Session; the worker never touches a widget and posts one RunFinished
message when it is done. Screens redraw from snapshots of the Session on a
timer. Clocks, devices and the data source are injected so tests are
deterministic. Only the current run is held in memory: once saved, an earlier
run lives in its files.

With the real data source, the app keeps a spare engine (measure/engine/spare.py)
while no run is going, from the start screen on and again once a run has ended:
Run hands it the spec, so the seconds of importing torch are already spent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from vramtui.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from vramtui.measure import events as ev
from vramtui.report.sessions import Saved, autosave, session_stem, sessions_dir
from vramtui.runspec import DeviceList, ResolvedRun, RunSpec
from vramtui.runspec.train_resolve import prepare_training
from vramtui.runspec.train_spec import TrainSpec
from vramtui.tui.messages import RunFinished
from vramtui.tui.run_state import (
    ActiveRun,
    Predictor,
    RecorderFactory,
    SpareEngines,
    TrainerFactory,
    fresh_trainer,
    measured_nothing,
)
from vramtui.tui.screens.export_screen import ExportScreen
from vramtui.tui.screens.help_screen import HelpScreen
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.start_screen import StartScreen
from vramtui.tui.screens.summary_screen import SummaryScreen
from vramtui.tui.snapshot_runs import with_snapshot_file
from vramtui.tui.storage import display_path
from vramtui.tui.widget_caches import release_widget_caches

if TYPE_CHECKING:
    from vramtui.measure.script.program_process import Program

QUIT_GRACE_S = 10.0  # q waits this long for the engine to end before leaving anyway
CTRL_C = "interrupted by SIGINT"  # what a run cancelled by Ctrl+C records, as headless


def _available_devices() -> DeviceList:
    from vramtui.measure.device_inventory import available

    return available()


class VramApp(App[int]):
    TITLE = "vramtui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        # Ctrl+C interrupts as it does headless, even in a text field (not copy there).
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
        Binding("s", "screenshot", "Screenshot"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        spec: RunSpec | None = None,
        *,
        start: bool = False,
        out_dir: Path | None = None,
        make_recorder: RecorderFactory | None = None,
        list_devices: Callable[[], DeviceList] = _available_devices,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = datetime.now,
        redraw_hz: float = 4.0,
        snapshot: bool = False,
        train: tuple[ResolvedRun, TrainSpec] | None = None,
        make_trainer: TrainerFactory | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        super().__init__()
        self.train_at_start = train  # `vramtui train --app`: this training run at once
        self.predictor = predictor  # a training run's estimate, beside its measurement
        self.snapshot = snapshot  # --snapshot: each CUDA run saves its allocator snapshot
        self.spec = spec or RunSpec()
        self.autostart = start
        self.out_dir = out_dir
        # The real data source draws on spare engines; a given one (a replay) does not.
        self.spares: SpareEngines | None = None
        if make_recorder is None:
            self.spares = SpareEngines()
            make_recorder = self.spares.recorder
        self.make_recorder = make_recorder
        self.make_trainer = make_trainer or (self.spares.trainer if self.spares else fresh_trainer)
        self.list_devices = list_devices
        self.clock = clock
        self.wall_clock = wall_clock
        self.redraw_hz = redraw_hz
        self.current: ActiveRun | None = None
        self.runs_started = 0
        self.saved_sessions: list[Saved] = []  # every session this app saved, oldest first
        self._quitting = False
        self._exit_code = EXIT_OK  # what leaving returns: 130 once a run is interrupted
        self._pending_interrupt: str | None = None  # a signal before the event loop ran

    @property
    def save_dir(self) -> Path:
        return self.out_dir if self.out_dir is not None else sessions_dir()

    def on_mount(self, event: events.Mount) -> None:
        self.push_screen(StartScreen(self.spec, autostart=self.autostart))
        if self.train_at_start is not None:
            self.begin_training(*self.train_at_start)
        self.call_after_refresh(self.prepare_spare)  # after the first frame
        self.call_after_refresh(self.take_pending_interrupt)

    def prepare_spare(self, spec: RunSpec | None = None) -> None:
        """Have a spare engine waiting for the next Run, unless a run is going (a spare
        importing beside a run would take CPU from what it measures) or the app is
        leaving."""
        busy = self.current is not None and self.current.running
        if self.spares is None or busy or self._quitting:
            return
        self.spares.prepare_for(spec or self.spec)

    # ---- a run -----------------------------------------------------------------------
    def begin(self, run: ResolvedRun) -> None:
        """Start a resolved run. A UsageError goes back to the form."""
        self._not_running()
        if self.snapshot:
            run = with_snapshot_file(run, self.save_dir, self.wall_clock(), self.notify)
        active = ActiveRun(run.spec, self.make_recorder(run))
        self._launch(active, RunScreen(active, self.redraw_hz))

    def begin_program(self, program: Program) -> None:
        """Profile the user's program (the start screen's "your script"): the run
        screen with its output in a log panel, as `vramtui profile --live` shows it."""
        from vramtui.measure.recorder import Recorder
        from vramtui.tui.screens.program_run_screen import OutputBuffer, ProgramRunScreen

        self._not_running()
        output = OutputBuffer()
        recorder = Recorder.for_program(program, capture=True, on_output=output.add)
        active = ActiveRun(self.spec, recorder)
        self._launch(active, ProgramRunScreen(active, output, self.redraw_hz))

    def start_training(self, spec: TrainSpec) -> None:
        """The start form's fine-tuning run: checked and resolved as `vramtui train` does
        (a choice that cannot run is said, and nothing starts), then measured on the run
        screen's step axis."""
        try:
            self.begin_training(*prepare_training(spec, self.list_devices()))
        except UsageError as exc:
            self.notify(str(exc), severity="error")

    def begin_training(self, run: ResolvedRun, spec: TrainSpec) -> None:
        """Train as `spec` says (its base model `run`, resolved) on the training run screen."""
        from vramtui.tui.screens.train_run_screen import TrainRunScreen

        self._not_running()
        active = ActiveRun(run.spec, self.make_trainer(run, spec), train=spec)
        predict = self.predictor
        estimate = (lambda: predict(run, spec)) if predict is not None else None
        self._launch(active, TrainRunScreen(active, self.redraw_hz, estimate))

    def _not_running(self) -> None:
        if self.current is not None and self.current.running:
            raise UsageError("a run is in progress; cancel it first")

    def _launch(self, active: ActiveRun, screen: Screen[None]) -> None:
        """`active` becomes the current run (the run before it is released: its files hold
        it), shown on `screen`; its worker starts."""
        self.current = active
        self.runs_started += 1
        self.push_screen(screen)
        self._drive(active)

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
            phase = session.snapshot().current_phase
            session.fail(ev.Failed("crashed", message.error, phase))
        run.ended = True
        view = session.snapshot()
        failure = view.failure
        refused = failure is not None and failure.kind == "usage" and measured_nothing(view)
        if not refused:  # a run refused before it began measured nothing: nothing to save
            self._save(run)
        if self._quitting:  # cancelled by q or a signal, or it ended just before
            self.leave_with(EXIT_INTERRUPTED if view.status == "cancelled" else self._exit_code)
            return
        self.prepare_spare(run.spec)
        if refused:
            self._back_to_start(run.spec, failure)
            return
        self.screen.refresh_bindings()
        if isinstance(self.screen, RunScreen) and self.screen.run is run:
            self.push_screen(SummaryScreen(run))

    def _save(self, run: ActiveRun) -> None:
        try:
            run.saved = autosave(run.session.snapshot(), self.save_dir, self.wall_clock())
            self.saved_sessions.append(run.saved)
        except OSError as exc:
            run.save_error = f"{exc.strerror or exc} ({self.save_dir})"
            self.notify(
                f"could not save the session: {run.save_error}; it stays in memory "
                "(e exports it elsewhere)",
                severity="error",
            )

    def cancel_run(self, reason: str = "cancelled by the user") -> None:
        run = self.current
        if run is None or not run.running:
            self.notify("no run is in progress", severity="warning")
            return
        if run.cancelling:
            return
        run.cancelling = True
        self.notify("cancelling the run…", timeout=2)
        # Recorder.cancel() waits for the engine to end: not on the UI thread.
        self.run_worker(lambda: run.recorder.cancel(reason), thread=True, group="cancel")

    # ---- leaving -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        """q: end any engine process first (its session is saved, cancelled), then leave:
        exit code 130 if that cancelled a run, else 0. A second q leaves at once."""
        self.leave()

    def action_interrupt(self) -> None:
        """Ctrl+C: as SIGINT headless."""
        self.interrupt(CTRL_C)

    def interrupt(self, reason: str) -> None:
        """Ctrl+C, SIGTERM or SIGHUP: any run ends cancelled with `reason` as its message
        ('interrupted by SIGTERM') and its partial session is saved; then the app leaves
        with exit code 130. A repeated signal does not cut the save short."""
        self._exit_code = EXIT_INTERRUPTED
        self.leave(reason)

    def interrupt_from_signal(self, reason: str) -> None:
        """`interrupt`, from a signal handler: that runs in the main thread between any
        two bytecodes, the event loop's included, so the interrupt is handed to the loop
        (which this wakes). Before the loop runs it waits for the app's mount."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._pending_interrupt = self._pending_interrupt or reason
            return
        loop.call_soon_threadsafe(self.interrupt, reason)

    def take_pending_interrupt(self) -> None:
        """A signal that came before the app was mounted, acted on now."""
        if self._pending_interrupt is not None:
            self.interrupt(self._pending_interrupt)

    def leave(self, reason: str | None = None) -> None:
        """End a running run first (the session is saved when its worker ends), then exit.
        `reason` is None for q, whose second press leaves at once."""
        run = self.current
        if run is None or not run.running:
            self.leave_with(self._exit_code)
            return
        if self._quitting:
            if reason is None:
                self.leave_with(EXIT_INTERRUPTED)
            return
        self._quitting = True
        self.cancel_run(reason or "cancelled by the user")
        self.notify("stopping the engine before quitting…", timeout=QUIT_GRACE_S)
        self.set_timer(QUIT_GRACE_S, lambda: self.leave_with(EXIT_INTERRUPTED))

    def leave_with(self, code: int) -> None:
        """Exit with `code` as the process's exit code (and the app's result)."""
        self.exit(code, return_code=code)

    def on_unmount(self) -> None:
        run = self.current
        if run is not None and run.running:
            run.recorder.cancel()
        if self.spares is not None:
            self.spares.close()

    def _finished_run(self, what: str) -> ActiveRun | None:
        """The current run if it has ended; else None, and a notice saying why `what`
        cannot happen yet."""
        run = self.current
        if run is None:
            self.notify(f"nothing to {what} yet: start a run first (ctrl+r)", severity="warning")
            return None
        if run.running:
            self.notify(f"the run is still going: {what} once it ends (c cancels it)")
            return None
        return run

    def action_summary(self) -> None:
        run = self._finished_run("summarise")
        if run is not None and not isinstance(self.screen, SummaryScreen):
            self.push_screen(SummaryScreen(run))

    def action_graph(self) -> None:
        run = self.current
        if run is None:
            self.notify("no run to graph yet: start one first (ctrl+r)", severity="warning")
        elif isinstance(self.screen, SummaryScreen):
            self.pop_screen()

    def action_run_again(self) -> None:
        run = self.current
        if run is not None and run.running:
            self.notify("cancel the run first (c)", severity="warning")
            return
        self._back_to_start(run.form_spec(self.spec) if run else self.spec)

    def _back_to_start(self, spec: RunSpec, refused: ev.Failed | None = None) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        release_widget_caches()
        start = StartScreen(spec)
        self.push_screen(start)
        if refused is not None:
            self.call_after_refresh(start.show_error, refused.message, refused.field)

    def action_export(self) -> None:
        run = self._finished_run("export")
        if run is None:
            return
        stem = session_stem(run.session.snapshot(), self.wall_clock())
        suggestion = f"vramtui-{stem}"  # in the folder vramtui was started from

        def done(paths: list[Path] | None) -> None:
            if paths:
                self.notify("exported " + ", ".join(display_path(p) for p in paths))

        self.push_screen(ExportScreen(run.session.snapshot(), suggestion), done)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """An SVG of the screen in the sessions folder, named after the session (Textual's
        `filename` and `path` are not used)."""
        folder = self.save_dir
        session = self.current.session.snapshot() if self.current else None
        name = f"{session_stem(session, self.wall_clock())}-{type(self.screen).__name__}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = self.save_screenshot(filename=name, path=str(folder))
        except OSError as exc:
            self.notify(f"screenshot not saved: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"screenshot saved to {display_path(Path(saved))}")

    def action_start_run(self) -> None:
        if isinstance(self.screen, StartScreen):
            self.screen.action_run()
        else:
            self.notify("runs start from the start screen: r goes there", severity="warning")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        ours = ("Screenshot", "Keys")  # replaced below: saved where sessions go; our help screen
        yield from (c for c in super().get_system_commands(screen) if c.title not in ours)
        yield SystemCommand(
            "Run", "start a run with the start screen's settings", self.action_start_run
        )
        yield SystemCommand("Cancel", "end the running generation", self.cancel_run)
        yield SystemCommand("Export", "save the finished run's CSV and JSON", self.action_export)
        yield SystemCommand("Graph", "memory against tokens", self.action_graph)
        yield SystemCommand("Summary", "the finished run's peaks", self.action_summary)
        yield SystemCommand(
            "Screenshot", "save an SVG of this screen beside the sessions", self.action_screenshot
        )
        yield SystemCommand("Run again", "back to the start screen", self.action_run_again)
        yield SystemCommand("Keys", "what every key does (also ?)", self.action_help)
