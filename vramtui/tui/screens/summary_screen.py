"""The summary when a run ends: peaks (value, token, phase), rates, bytes per parameter."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from vramtui.analysis.breakdown import compare, estimate_for_session
from vramtui.analysis.placed_comparison import placed_estimates
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import typed_summary
from vramtui.measure.summary_record import Summary
from vramtui.report.allocations_text import allocations_text
from vramtui.report.summary_text import (
    DEVICE_HEADER,
    DEVICE_NOTE,
    comparison_rows,
    device_note,
    device_rows,
    fact_rows,
    peak_rows,
    series_labels,
)
from vramtui.report.train_text import training_text
from vramtui.tui.app_host import host_of
from vramtui.tui.run_state import ActiveRun
from vramtui.tui.screen_text import run_title
from vramtui.tui.storage import display_path
from vramtui.tui.widgets.header import ScreenHeader


def heading(summary: Summary) -> str:
    status = summary.status
    requested = summary.tokens_requested  # a profiled program has no token budget
    done = summary.tokens_generated
    tokens = f"{done}/{requested} tokens" if requested is not None else f"{done} tokens"
    training = summary.training
    if training is not None:  # a training run counts steps, not tokens generated
        tokens = f"training, {training.steps_done}/{training.steps_requested} steps"
    head = f"Peak memory — {summary.model}, {tokens}"
    if status == "completed":
        return head
    kind = summary.failure.kind if summary.failure else None
    if kind and kind != "cancelled":
        return f"{head} · failed ({kind})"
    return f"{head} · {status}"


def peaks_table(summary: Summary) -> Table:
    backend = summary.environment.backend
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    table.add_column("series", no_wrap=True)
    table.add_column("peak", justify="right", no_wrap=True)
    table.add_column("at", no_wrap=True)
    rows = peak_rows(summary, series_labels(backend))
    for label, value, at in rows:
        table.add_row(label, value, at)
    if not rows:
        table.add_row(Text("no samples were recorded", style="dim"), "", "")
    return table


def devices_table(summary: Summary, view: SessionView) -> Table | None:
    """A placed model's devices: layers, weights, peaks (allocator and NVML) of each,
    predicted against measured."""
    if not summary.devices:
        return None
    table = Table(
        box=None,
        padding=(0, 2, 0, 0),
        show_edge=False,
        header_style="bold",
        caption=DEVICE_NOTE,
        caption_justify="left",
        caption_style="dim",
    )
    for name in DEVICE_HEADER:
        table.add_column(
            name, no_wrap=True, justify="left" if name in ("device", "layers") else "right"
        )
    for row in device_rows(summary.devices, placed_estimates(view)):
        table.add_row(*row)
    return table


def facts_table(summary: Summary) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_header=False, show_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for key, value in fact_rows(summary):
        table.add_row(key, value)
    return table


def comparison_table(view: SessionView) -> Table | None:
    """Predicted against measured, with the error in percent; None without an estimate."""
    est = estimate_for_session(view)
    rows = comparison_rows(compare(est, view)) if est is not None and view.hello else []
    if not rows:
        return None
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    table.add_column("predicted vs measured", no_wrap=True)
    table.add_column("predicted", justify="right", no_wrap=True)
    table.add_column("measured", justify="right", no_wrap=True)
    table.add_column("error", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def notes_text(summary: Summary, run: ActiveRun) -> str:
    notes = [device_note(summary.environment)]
    notes += [n for n in summary.notices if not n.startswith("no NVML on")]
    if run.saved is not None:
        folder = display_path(run.saved.csv.parent)
        notes.append(f"saved to {folder}/{run.saved.csv.name} and .json")
    elif run.save_error:
        notes.append(f"not saved: {run.save_error}")
    return "\n".join(n for n in notes if n)


class SummaryScreen(Screen[None]):
    DEFAULT_CSS = """
    SummaryScreen #summary { padding: 0 1; }
    SummaryScreen #heading { text-style: bold; color: $accent; margin-bottom: 1; }
    SummaryScreen #peaks { margin-bottom: 1; }
    SummaryScreen #training { margin-bottom: 1; }
    SummaryScreen #devices { margin-bottom: 1; }
    SummaryScreen #facts { margin-bottom: 1; }
    SummaryScreen #comparison { margin-bottom: 1; }
    SummaryScreen #allocations { margin-bottom: 1; }
    SummaryScreen #notes { color: $text-muted; }
    SummaryScreen.-failed #heading { color: $error; }
    """

    BINDINGS = [
        Binding("g", "graph", "Graph"),
        Binding("escape", "graph", "Graph", show=False),
        Binding("e", "app.export", "Export"),
        Binding("r", "app.run_again", "Run again"),
        Binding("c", "compare", "Compare with…"),
    ]

    def __init__(self, run: ActiveRun) -> None:
        super().__init__()
        self.run = run
        self.summary = typed_summary(run.session.snapshot())

    def compose(self) -> ComposeResult:
        summary = self.summary
        yield ScreenHeader()
        with VerticalScroll(id="summary"):
            yield Static(heading(summary), id="heading")
            yield Static(peaks_table(summary), id="peaks")
            if summary.training is not None:  # the recipe, each phase's peak, the parts
                yield Static(training_text(summary.training), id="training", markup=False)
            devices = devices_table(summary, self.run.session.snapshot())
            if devices is not None:
                yield Static(devices, id="devices")
            yield Static(facts_table(summary), id="facts")
            comparison = comparison_table(self.run.session.snapshot())
            if comparison is not None:
                yield Static(comparison, id="comparison")
            allocations = allocations_text(
                summary.allocation_snapshot
            )  # --snapshot: what held the bytes
            if allocations:
                yield Static(allocations, id="allocations", markup=False)
            yield Static(notes_text(summary, self.run), id="notes")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run.session.snapshot())
        self.set_class(self.summary.status == "failed", "-failed")
        self.query_one("#summary").focus()  # arrows and page keys scroll it

    def action_graph(self) -> None:
        self.app.pop_screen()

    def action_compare(self) -> None:
        from vramtui.tui.screens.compare_screen import compare_with
        from vramtui.tui.screens.pick_session_screen import PickSessionScreen

        saved = self.run.saved.json if self.run.saved else None
        folder = host_of(self).save_dir
        self.app.push_screen(
            PickSessionScreen(folder, exclude=saved),
            lambda path: compare_with(self.app, self.run.session.snapshot(), saved, path),
        )
