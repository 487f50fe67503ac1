"""The run screen: memory against the token index while the engine generates.

Nothing here is driven by the engine: a timer (a few Hz) reads the Session and
redraws. The plot is rebuilt only when its data changed, from series cut down
to the plot's width, so a redraw costs milliseconds however long the run.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static

from vramtui.report import device_note
from vramtui.tui.plotdata import AXES, build_plot_data
from vramtui.tui.run_state import ActiveRun
from vramtui.tui.text import run_title, series_rows, side_facts, status_text
from vramtui.tui.widgets.memory_plot import MemoryPlot
from vramtui.tui.widgets.series_table import SeriesTable


class RunScreen(Screen[None]):
    DEFAULT_CSS = """
    RunScreen #run-main { height: 1fr; }
    RunScreen #plot { width: 1fr; height: 1fr; }
    RunScreen #side { width: 36; height: 1fr; padding: 0 1; border-left: vkey $primary 40%; }
    RunScreen #side-facts { height: auto; margin-top: 1; color: $text-muted; }
    RunScreen #extra { height: auto; margin-top: 1; display: none; }
    RunScreen #status { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    RunScreen #note { height: auto; max-height: 2; padding: 0 1; color: $warning; }
    """

    BINDINGS = [
        Binding("c", "cancel", "Cancel run"),
        Binding("x", "toggle_axis", "Tokens/seconds"),
        Binding("p", "summary", "Summary"),
        Binding("e", "export", "Export"),
        Binding("r", "run_again", "Run again"),
    ]

    def __init__(self, run: ActiveRun, redraw_hz: float = 4.0) -> None:
        super().__init__()
        self.run = run
        self.redraw_hz = redraw_hz
        self.axis = AXES[0]
        self._plot_key: tuple[object, ...] | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-main"):
            yield MemoryPlot(id="plot")
            with Vertical(id="side"):
                yield SeriesTable(id="series")
                yield Static("", id="side-facts")
                # Room for the measured breakdown and the OOM forecast.
                yield Static("", id="extra")
        yield Static("", id="status")
        yield Static("", id="note")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run.session)
        self._timer = self.set_interval(1.0 / self.redraw_hz, self.redraw)
        self.call_after_refresh(self.redraw)

    def on_screen_resume(self) -> None:
        self._plot_key = None
        self.redraw()

    def on_resize(self) -> None:
        self._plot_key = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.run.running
        if action in ("summary", "export", "run_again"):
            return not self.run.running
        return True

    def action_cancel(self) -> None:
        self.app.cancel_run()  # type: ignore[attr-defined]

    def action_summary(self) -> None:
        self.app.action_summary()  # type: ignore[attr-defined]

    def action_export(self) -> None:
        self.app.action_export()  # type: ignore[attr-defined]

    def action_run_again(self) -> None:
        self.app.action_run_again()  # type: ignore[attr-defined]

    def action_toggle_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self.redraw()

    def redraw(self) -> None:
        """Status line, series table and (when its data changed) the plot."""
        if not self.is_current:
            return
        run = self.run
        session = run.session
        now = self.app.clock()  # type: ignore[attr-defined]
        self.sub_title = run_title(session)
        self.query_one("#status", Static).update(status_text(session, now, run.cancelling))
        plot = self.query_one("#plot", MemoryPlot)
        key = (
            session.tokens_done,
            len(session.samples),
            len(session.nvml),
            session.status,
            self.axis,
            plot.size,
            int(session.elapsed(now)) if self.axis == "seconds" else 0,
        )
        if key != self._plot_key:
            self._plot_key = key
            plot.show(build_plot_data(session, axis=self.axis, buckets=plot.buckets, now=now))
        drawn = plot.data is not None and plot.data.reference is not None
        cpu = session.environment.get("backend") == "cpu"
        self.query_one("#series", SeriesTable).show(
            series_rows(session),
            session.device_total(),
            drawn,
            "system RAM" if cpu else "device total",
        )
        self.query_one("#side-facts", Static).update(side_facts(session))
        notes = [device_note(session.environment)] + [
            n for n in list(session.notices) if not n.startswith("no NVML on")
        ]
        note = self.query_one("#note", Static)
        note.update("\n".join(n for n in notes if n))
        note.display = any(notes)
