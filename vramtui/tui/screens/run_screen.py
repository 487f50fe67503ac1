"""The run screen: memory against the token index while the engine generates.

Nothing here is driven by the engine: a timer (a few Hz) reads the Session and
redraws. The plot is rebuilt only when its data changed, from series cut down
to the plot's width, so a redraw costs milliseconds however long the run.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, Static

from vramtui.analysis.breakdown import estimate_for_session, measured_breakdown
from vramtui.analysis.live_forecast import forecast_oom, headroom
from vramtui.measure.device_view import device_names, on_device, run_device
from vramtui.measure.session import SessionView
from vramtui.predict.estimator import Estimate
from vramtui.report.summary_text import device_note
from vramtui.runspec.program_spec import tokens_requested
from vramtui.tui.app_host import host_of
from vramtui.tui.plotdata import AXES, build_plot_data
from vramtui.tui.prediction import breakdown_rows, forecast_text, predicted_curve, stored_as
from vramtui.tui.run_state import ActiveRun
from vramtui.tui.screen_text import device_lines, run_title, series_rows, side_facts, status_text
from vramtui.tui.screens.keys import ExplainedKeysScreen
from vramtui.tui.widgets.breakdown_panel import BreakdownPanel
from vramtui.tui.widgets.header import ScreenHeader
from vramtui.tui.widgets.memory_plot import MemoryPlot
from vramtui.tui.widgets.series_table import SeriesTable

# The breakdown's total, named to fit beside the plot.
TOTAL_NAMES = {
    "allocator reserved": "reserved",
    "allocator peak": "allocated peak",
    "process RSS peak": "RSS peak",
}


# What the breakdown panel shows: title, rows, total, forecast, warn (BreakdownPanel.show)
Shown = tuple[str, list[tuple[str, int]], tuple[str, int] | None, str, bool]


class RunScreen(ExplainedKeysScreen):
    DEFAULT_CSS = """
    RunScreen #run-main { height: 1fr; }
    RunScreen #plot { width: 1fr; height: 1fr; }
    RunScreen #side { width: 36; height: 1fr; padding: 0 1; border-left: vkey $primary 40%; }
    RunScreen #side-facts { height: auto; color: $text-muted; }
    RunScreen #devices { height: auto; margin-top: 1; }
    RunScreen #breakdown { height: auto; margin-top: 1; }
    RunScreen #status { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    RunScreen #note { height: auto; max-height: 2; padding: 0 1; color: $warning; }
    """

    BINDINGS = [
        Binding("c", "cancel", "Cancel run"),
        Binding("x", "toggle_axis", "x-axis"),
        Binding("d", "next_device", "Device"),
        Binding("p", "summary", "Summary"),
        Binding("e", "export", "Export"),
        Binding("r", "run_again", "Run again"),
    ]

    axes: tuple[str, ...] = AXES  # the x axes x cycles through, the first shown first

    def __init__(self, run: ActiveRun, redraw_hz: float = 4.0) -> None:
        super().__init__()
        self.run = run
        self.redraw_hz = redraw_hz
        self.axis = self.axes[0]
        self._plot_key: tuple[object, ...] | None = None
        self._timer: Timer | None = None
        self._estimate: Estimate | None = None
        self._estimate_for: str | None = None  # the backend it was made for
        self._curve: tuple[int, list[tuple[int, int]]] | None = None  # (points, curve)
        self._shown: dict[str, object] = {}  # widget id -> what it shows now
        self.devices: list[str] = []  # a placed model's devices (none: one device)
        self.device: str | None = None  # the one the graph, breakdown and forecast follow

    def _changed(self, widget_id: str, shown: object) -> bool:
        """Whether `shown` differs from what the widget shows (and note it if so)."""
        if self._shown.get(widget_id) == shown:
            return False
        self._shown[widget_id] = shown
        return True

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        with Horizontal(id="run-main"):
            yield MemoryPlot(id="plot")
            with Vertical(id="side"):
                yield SeriesTable(id="series")
                yield Static("", id="side-facts")
                yield Static("", id="devices")
                yield BreakdownPanel(id="breakdown")
        yield Static("", id="status")
        yield Static("", id="note")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run.session.snapshot())
        self._timer = self.set_interval(1.0 / self.redraw_hz, self.redraw)
        self.call_after_refresh(self.redraw)

    def on_screen_resume(self) -> None:
        self._plot_key = None
        self._shown.clear()
        try:
            self.redraw()
        except NoMatches:  # just pushed, its widgets still mounting: on_mount draws it
            pass

    def on_resize(self) -> None:
        self._plot_key = None
        self._shown.clear()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_device" and len(self.devices) < 2:
            return False  # one device: no key to show
        return super().check_action(action, parameters)

    def unavailable(self, action: str) -> str | None:
        if action == "cancel" and not self.run.running:
            return "the run has ended: nothing to cancel (r runs again)"
        if action in ("summary", "export", "run_again") and self.run.running:
            what = {"summary": "the summary", "export": "export", "run_again": "run again"}
            return f"{what[action]}: once the run ends (c cancels it)"
        return None

    def action_cancel(self) -> None:
        host_of(self).cancel_run()

    def action_summary(self) -> None:
        host_of(self).action_summary()

    def action_export(self) -> None:
        host_of(self).action_export()

    def action_run_again(self) -> None:
        host_of(self).action_run_again()

    def action_next_device(self) -> None:
        if self.devices:
            at = self.devices.index(self.device) if self.device in self.devices else -1
            self.device = self.devices[(at + 1) % len(self.devices)]
            self.redraw()

    def _follow_devices(self, session: SessionView) -> None:
        """Once the model is placed: its devices, the run's own followed first."""
        names = device_names(session)
        if names == self.devices:
            return
        self.devices = names
        if self.device not in names:
            own = run_device(session)
            self.device = own if own in names else names[0] if names else None
        self.refresh_bindings()

    def action_toggle_axis(self) -> None:
        self.axis = self.axes[(self.axes.index(self.axis) + 1) % len(self.axes)]
        self.redraw()

    def estimate(self, view: SessionView) -> Estimate | None:
        """The estimate of this run, once the engine has said what it runs on."""
        backend = view.backend
        if backend is None:
            return None
        if self._estimate_for != backend:
            self._estimate_for = backend
            self._estimate = estimate_for_session(view)
            if self._estimate is None:
                self._trace(view)  # a model not traced yet: traced off the UI thread
        return self._estimate

    @work(thread=True, group="trace")
    def _trace(self, view: SessionView) -> None:
        est = estimate_for_session(view, only_cached=False)
        if est is not None:
            self.app.call_from_thread(self._traced, est)

    def _traced(self, est: Estimate) -> None:
        self._estimate, self._curve = est, None
        self.redraw()

    def predicted_curve(self, view: SessionView, points: int) -> list[tuple[int, int]] | None:
        est = self.estimate(view)
        if est is None:
            return None
        if self._curve is None or self._curve[0] != points:
            self._curve = (points, predicted_curve(est, points))
        return self._curve[1]

    def facts(self, session: SessionView, room: int | None) -> str:
        """Below the series table: what is loaded, or the room left (screen_text)."""
        return side_facts(session, room)

    def status_line(self, session: SessionView, now: float) -> str:
        return status_text(session, now, self.run.cancelling)

    def redraw(self) -> None:
        """The status line every time; the rest only when the data has changed."""
        if not self.is_current:
            return
        run = self.run
        session = run.session.snapshot()  # one moment for everything drawn below
        now = host_of(self).clock()
        status = self.status_line(session, now)
        if self._changed("status", status):  # one line, always: no layout needed
            self.query_one("#status", Static).update(status, layout=False)
        plot = self.query_one("#plot", MemoryPlot)
        self._follow_devices(session)
        key = (
            self.device,
            session.tokens_done,
            len(session.samples),
            len(session.nvml),
            session.status,
            self.axis,
            plot.size,
            int(session.elapsed(now)) if self.axis == "seconds" else 0,
        )
        if key == self._plot_key:
            return
        self._plot_key = key
        placed = session
        if self.device is not None:  # a placed model: the device followed, as a session
            session = on_device(session, self.device)
        self.sub_title = run_title(session)
        curve = self.predicted_curve(session, plot.buckets) if self.axis != "seconds" else None
        plot.show(
            build_plot_data(session, axis=self.axis, buckets=plot.buckets, now=now, predicted=curve)
        )
        drawn = plot.data is not None and plot.data.reference is not None
        cpu = session.environment.backend == "cpu"
        series = (
            series_rows(session),
            session.device_total(),
            drawn,
            "system RAM" if cpu else "device total",
            curve is not None,
        )
        if self._changed("series", series):
            self.query_one("#series", SeriesTable).show(*series[:4], predicted=series[4])
        live = self.device is not None and not session.finished  # ended: the GPU is given back
        facts = self.facts(session, headroom(session) if live else None)
        if self._changed("side-facts", facts):
            self.query_one("#side-facts", Static).update(facts)
        devices = device_lines(placed, self.device)
        if self._changed("devices", devices):
            shown = self.query_one("#devices", Static)
            shown.update(devices)
            shown.display = bool(devices)
        self.show_breakdown(session, cpu)
        notes = [device_note(session.environment)] + [
            n for n in list(session.notices) if not n.startswith("no NVML on")
        ]
        if self._changed("note", notes):
            note = self.query_one("#note", Static)
            note.update("\n".join(n for n in notes if n))
            note.display = any(notes)

    def show_breakdown(self, session: SessionView, cpu: bool) -> None:
        panel = self.query_one("#breakdown", BreakdownPanel)
        breakdown = measured_breakdown(session, "latest")
        requested = tokens_requested(session.spec)
        text, warn = forecast_text(forecast_oom(session), requested, session.tokens_done)
        if session.finished:
            text, warn = "", False
        if breakdown is None:
            shown: Shown = ("where the bytes are", [], None, text, warn)
        else:
            where = f"token {breakdown.token}" if breakdown.token is not None else breakdown.phase
            total = TOTAL_NAMES.get(breakdown.total_source, breakdown.total_source)
            shown = (
                f"where the bytes are · {where}{stored_as(session.loaded)}",
                breakdown_rows(breakdown, cpu),
                (total, breakdown.total_bytes),
                text,
                warn,
            )
        if self._changed("breakdown", (shown, panel.size.width)):
            panel.show(*shown)
