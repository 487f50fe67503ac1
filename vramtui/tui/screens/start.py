"""The start screen: pick a model and what to run it with, then Run.

Everything is reachable with Tab / Shift+Tab and arrows; Enter in a field or
on the Run button (or ctrl+r anywhere) starts the run. A bad value is shown in
place, under its field, and never leaves the screen.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from vramtui.catalogue import CATALOGUE
from vramtui.commands.common import model_label
from vramtui.devices import DeviceChoice
from vramtui.errors import UsageError
from vramtui.spec import ATTENTION, DTYPES, RunSpec, validate
from vramtui.tui.devices import DeviceOption, device_options, initial_device_options
from vramtui.tui.form import FIELDS, error_field, model_facts
from vramtui.tui.prediction import backend_for, spec_estimate, start_prediction
from vramtui.tui.widgets.header import ScreenHeader
from vramtui.units import format_bytes, format_count

SOURCE_OPTIONS = [
    ("architecture (random weights)", "architecture"),
    ("config.json", "config"),
    ("checkpoint (local folder)", "checkpoint"),
]
DTYPE_OPTIONS = [("auto (fp16 GPU, fp32 CPU)", "auto")] + [(d, d) for d in DTYPES]
ATTN_OPTIONS = [(a, a) for a in ATTENTION]


def _row(label: str, widget: Static | Input | Select | Button, field: str) -> ComposeResult:
    with Horizontal(classes="row"):
        yield Label(label, classes="label")
        yield widget
    yield Static("", id=f"{field}-error", classes="field-error")


def _select_row(
    label: str, field: str, options: list[tuple[str, str]], value: str
) -> ComposeResult:
    select = Select(options, value=value, allow_blank=False, id=field, compact=True)
    yield from _row(label, select, field)


class StartScreen(Screen[None]):
    DEFAULT_CSS = """
    StartScreen #start-main { height: 1fr; }
    StartScreen #models { width: 40; height: 1fr; padding: 0 1; }
    StartScreen #model-table { height: auto; max-height: 12; border: round $primary 50%; }
    StartScreen #model-table:focus { border: round $accent; }
    StartScreen #model-table.-off { opacity: 50%; }
    StartScreen #model-info { height: auto; color: $text-muted; padding: 0 1; }
    StartScreen #prediction { height: auto; padding: 0 1; margin-top: 1; }
    StartScreen #prediction.-fits { color: $success; }
    StartScreen #prediction.-warn { color: $error; text-style: bold; }
    StartScreen #fields { width: 1fr; height: 1fr; padding: 1 1 0 0; }
    StartScreen .row { height: 1; margin-bottom: 1; }
    StartScreen .label { width: 12; color: $text-muted; }
    StartScreen .row Input, StartScreen .row Select { width: 1fr; }
    StartScreen .field-error { display: none; color: $error; height: auto; margin: -1 0 1 12; }
    StartScreen .field-error.-shown { display: block; }
    StartScreen #run { margin-left: 12; }
    """

    BINDINGS = [Binding("ctrl+r", "run", "Run", priority=True)]

    def __init__(self, spec: RunSpec, autostart: bool = False) -> None:
        super().__init__()
        self.base = spec
        self.autostart = autostart
        self.devices: list[DeviceOption] = initial_device_options(spec.device)
        self.found: list[DeviceChoice] = []  # what NVML (and the platform) reported

    def compose(self) -> ComposeResult:
        spec = self.base
        yield ScreenHeader()
        with Horizontal(id="start-main"):
            with Vertical(id="models"):
                table: DataTable[str] = DataTable(id="model-table", cursor_type="row")
                table.border_title = "model"
                yield table
                yield Static("", id="model-error", classes="field-error")
                yield Static("", id="model-info")
                yield Static("", id="prediction")
            with Vertical(id="fields"):
                yield from _select_row("Source", "source", SOURCE_OPTIONS, spec.source)
                yield from _row(
                    "Path",
                    Input(
                        spec.path or "",
                        placeholder="config.json or checkpoint folder",
                        id="path",
                        compact=True,
                    ),
                    "path",
                )
                for label, field in (
                    ("Tokens", "tokens"),
                    ("Prompt", "prompt_tokens"),
                    ("Batch", "batch"),
                ):
                    value = str(getattr(spec, field))
                    yield from _row(
                        label, Input(value, id=field, type="integer", compact=True), field
                    )
                yield from _select_row("Dtype", "dtype", DTYPE_OPTIONS, spec.dtype or "auto")
                yield from _select_row("Attention", "attn", ATTN_OPTIONS, spec.attn)
                yield from _select_row("Device", "device", self._device_items(), spec.device)
                yield Button("Run", id="run", variant="primary", compact=True)
                yield Static("", id="form-error", classes="field-error")
        yield Footer()

    def _device_items(self) -> list[tuple[str, str]]:
        return [(d.label, d.id) for d in self.devices]

    def on_mount(self) -> None:
        self.sub_title = "pick a model and a token budget"
        table = self.query_one("#model-table", DataTable)
        table.add_columns("model", "params", "fp16 weights")
        for info in CATALOGUE.values():
            table.add_row(
                info.name,
                Text(format_count(info.params), justify="right"),
                Text(format_bytes(info.weights_bytes("float16")), justify="right"),
                key=info.name,
            )
        if self.base.model in CATALOGUE:
            table.move_cursor(row=list(CATALOGUE).index(self.base.model))
        self._source_changed(self.base.source)
        self._show_model_facts()
        self.load_devices()
        if self.base.source == "architecture":
            table.focus()
        else:
            self.query_one("#path", Input).focus()
        if self.autostart:
            self.call_after_refresh(self.action_run)

    # ---- devices: NVML may take a moment, so it is asked off the UI thread ----------
    @work(thread=True, exclusive=True, group="devices")
    def load_devices(self) -> None:
        found = list(self.app.list_devices())  # type: ignore[attr-defined]
        self.app.call_from_thread(self._set_devices, found)

    def _set_devices(self, found: list[DeviceChoice]) -> None:
        select = self.query_one("#device", Select)
        current = select.value
        self.found = found
        options = device_options(found, self.base.device)
        self.devices = options
        select.set_options(self._device_items())
        ids = [d.id for d in options]
        select.value = current if current in ids else ids[0]
        self._show_model_facts()

    # ---- the form --------------------------------------------------------------------
    @on(Select.Changed, "#source")
    def _on_source(self, event: Select.Changed) -> None:
        self._source_changed(str(event.value))

    def _source_changed(self, source: str) -> None:
        architecture = source == "architecture"
        self.query_one("#path", Input).disabled = architecture
        self.query_one("#model-table", DataTable).set_class(not architecture, "-off")
        self._show_model_facts()

    @on(DataTable.RowHighlighted, "#model-table")
    @on(Select.Changed)
    @on(Input.Changed)
    def _show_model_facts(self) -> None:
        """The model's shape under the table, and the estimator's prediction."""
        info = self.query_one("#model-info", Static)
        if self._value("source") != "architecture":
            info.update("model: from the config or checkpoint at Path")
        else:
            batch = self.query_one("#batch", Input).value
            info.update(
                model_facts(
                    self._model(), self._value("dtype"), int(batch) if batch.isdigit() else 1
                )
            )
        self._show_prediction()

    def _show_prediction(self) -> None:
        prediction = self.query_one("#prediction", Static)
        try:
            spec = self.read_spec()
        except UsageError:
            prediction.update("")
            return
        backend = backend_for(spec.device, self.found)
        wanted = spec.device
        if wanted == "auto":
            wanted = next((d.id for d in self.found if d.id.startswith("cuda")), "cpu")
        device = next((d for d in self.found if d.id == wanted), None)
        result = start_prediction(spec_estimate(spec, backend), device)
        prediction.update(result.text)
        prediction.set_class(result.fits is False, "-warn")
        prediction.set_class(result.fits is True, "-fits")

    @on(DataTable.RowSelected, "#model-table")
    def _on_model_chosen(self) -> None:
        self.query_one("#tokens", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#run")
    def action_run(self) -> None:
        self.clear_errors()
        try:
            spec = self.read_spec()
            validate(spec)
            self.app.begin(spec)  # type: ignore[attr-defined]
        except UsageError as exc:
            self.show_error(str(exc))

    def _value(self, field: str) -> str:
        return str(self.query_one(f"#{field}", Select).value)

    def _model(self) -> str:
        table = self.query_one("#model-table", DataTable)
        names = list(CATALOGUE)
        row = table.cursor_row
        return names[row] if 0 <= row < len(names) else self.base.model

    def _int(self, field: str, flag: str) -> int:
        text = self.query_one(f"#{field}", Input).value.strip()
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{flag} must be a whole number, got {text!r}") from None

    def read_spec(self) -> RunSpec:
        """The spec the form describes; flags the form does not show keep their values."""
        source = self._value("source")
        path = self.query_one("#path", Input).value.strip() or None
        if source == "architecture":
            model, path = self._model(), None
        elif self.base.source == source and self.base.path == path:
            model = self.base.model
        else:
            model = model_label(path) if path else source
        dtype = self._value("dtype")
        return replace(
            self.base,
            model=model,
            source=source,
            path=path,
            tokens=self._int("tokens", "--tokens"),
            prompt_tokens=self._int("prompt_tokens", "--prompt-tokens"),
            batch=self._int("batch", "--batch"),
            dtype=None if dtype == "auto" else dtype,
            attn=self._value("attn"),
            device=self._value("device"),
        )

    def clear_errors(self) -> None:
        for error in self.query(".field-error"):
            error.remove_class("-shown")
            if isinstance(error, Static):
                error.update("")

    def show_error(self, message: str) -> None:
        """Put a UsageError under the field it is about (or under the Run button)."""
        field = error_field(message)
        target = "model" if field == "model" else field if field in FIELDS else "form"
        error = self.query_one(f"#{target}-error", Static)
        error.update(message)
        error.add_class("-shown")
        focus = {"model": "#model-table", "form": "#run"}.get(target, f"#{target}")
        widget = self.query_one(focus)
        if not widget.disabled:
            widget.focus()
