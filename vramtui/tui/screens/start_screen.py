"""The start screen: pick a model and what to run it with, then Run.

Everything is reachable with Tab / Shift+Tab and arrows; Enter in a field or
on the Run button (or ctrl+r anywhere) starts the run. Every field is checked
as it changes: a bad value is named under its own field, several at once, and
the message goes when the value is fixed. The prediction is made off the UI
thread and shown when ready, so typing never waits for it.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Select, Static

from vramtui.errors import UsageError
from vramtui.measure.script.program_process import program_from_text
from vramtui.models.catalogue import CATALOGUE
from vramtui.runspec import (
    DeviceList,
    ResolvedRun,
    RunSpec,
    resolve_dtype,
)
from vramtui.runspec.device_choice import backend_of
from vramtui.runspec.train_spec import TrainSpec
from vramtui.tui import device_list as dev
from vramtui.tui.app_host import host_of
from vramtui.tui.card_plan_view import CardPlanShown, PlanInfo
from vramtui.tui.device_list import DeviceOption, device_options, initial_device_options
from vramtui.tui.form import FIELDS, FormResult, FormValues, model_facts, place_of, read_form
from vramtui.tui.messages import DevicesFound, PredictionReady
from vramtui.tui.screen_text import run_name
from vramtui.tui.screens.confirm_run_screen import ConfirmRunScreen, confirm_text
from vramtui.tui.screens.start_fields import FIELDS_CSS, form_fields, show_rows, train_values
from vramtui.tui.train_form import TRAIN_FIELDS, TrainResult, read_train
from vramtui.tui.widgets.header import ScreenHeader
from vramtui.tui.widgets.model_table import ModelTable
from vramtui.tui.widgets.prediction_line import PredictionLine

PLACES = (*FIELDS, *TRAIN_FIELDS, "model", "form")
SHAPE_FIELDS = (
    "workload", "tokens", "prompt_tokens", "batch", "dtype", "quant", "double_quant", "attn",
    "cache", "cache_bits", "device",
)  # fmt: skip

MODELS_CSS = """
StartScreen #start-main { height: 1fr; }
StartScreen #models { width: 44; height: 1fr; padding: 0 1; }
StartScreen #models.-plan { width: 54; }
StartScreen #models.-plan #model-table { max-height: 9; }
StartScreen #model-filter { width: 1fr; margin: 0 0 0 1; }
StartScreen #model-table { height: auto; max-height: 12; border: round $primary 50%; }
StartScreen #model-table:focus { border: round $accent; }
StartScreen #model-table.-off { opacity: 50%; }
StartScreen #model-info { height: auto; color: $text-muted; padding: 0 1; }
StartScreen #plan-info { height: auto; color: $text-muted; padding: 0 1; }
StartScreen #prediction { height: auto; padding: 0 1; margin-top: 1; }
StartScreen #prediction.-fits { color: $success; }
StartScreen #prediction.-warn { color: $error; text-style: bold; }
"""


class StartScreen(Screen[None]):
    DEFAULT_CSS = MODELS_CSS + FIELDS_CSS

    BINDINGS = [Binding("ctrl+r", "run", "Run", priority=True)]

    def __init__(
        self, spec: RunSpec, autostart: bool = False, train: TrainSpec | None = None
    ) -> None:
        """`train`: the fine-tuning recipe the form starts with (and the workload)."""
        super().__init__()
        self.base = spec
        self.train_base = train or TrainSpec(base=spec)
        self.workload = "fine-tune" if train else "generate"
        self.train = TrainResult(None, {})
        self.autostart = autostart
        self.devices: list[DeviceOption] = initial_device_options(spec.device)
        self.found: DeviceList = dev.unknown_devices(spec.device)
        self.form: FormResult = FormResult(None, {})
        self._run_when_predicted: ResolvedRun | None = None  # Run pressed, prediction due
        # the engine's refusal (place, message) of the form as it was: shown till it changes
        self._refusal: tuple[str, str, FormValues] | None = None

    def compose(self) -> ComposeResult:
        spec = self.base
        yield ScreenHeader()
        with Horizontal(id="start-main"):
            with Vertical(id="models"):
                yield Input(
                    placeholder="type to filter: llama, qwen3, 8b…",
                    id="model-filter",
                    compact=True,
                )
                table = ModelTable(spec.model, id="model-table")
                table.border_title = "model"
                yield table
                yield Static("", id="model-error", classes="field-error")
                yield Static("", id="model-info")
                yield PlanInfo(id="plan-info")  # what a plan for another card assumes
                yield PredictionLine(id="prediction")
            with VerticalScroll(id="fields"):
                yield from form_fields(spec, self._device_items(), self.train_base, self.workload)
        yield Footer()

    def _device_items(self) -> list[tuple[str, str]]:
        return [(d.label, d.id) for d in self.devices]

    def on_mount(self) -> None:
        self.sub_title = "pick a model and a token budget"
        table = self.query_one(ModelTable)
        table.show_models("")
        self._source_changed(self.base.source)
        self.load_devices()
        if self.base.source == "architecture":
            table.focus()
        else:
            self.query_one("#path", Input).focus()
        # --start waits for the device list: `auto` means the first GPU NVML finds.

    # ---- the model list: filtered as the user types ------------------------------------
    @on(Input.Changed, "#model-filter")
    def _on_filter(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one(ModelTable).show_models(event.value)
        self.refresh_form()

    @on(Input.Submitted, "#model-filter")
    def _on_filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#model-table", DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        """Typing on the model list filters it."""
        table = self.query_one("#model-table", DataTable)
        char = event.character
        if self.focused is table and char and (char.isalnum() or char in "-."):
            event.stop()
            box = self.query_one("#model-filter", Input)
            box.value += char
            box.cursor_position = len(box.value)
            box.focus()

    # ---- devices: NVML may take a moment, so it is asked off the UI thread ----------
    @work(thread=True, exclusive=True, group="devices")
    def load_devices(self) -> None:
        self.post_message(DevicesFound(host_of(self).list_devices()))

    def on_devices_found(self, message: DevicesFound) -> None:
        select = self.query_one("#device", Select)
        current = select.value
        self.found = message.devices
        self.devices = device_options(message.devices.choices, self.base.device)
        select.set_options(self._device_items())
        ids = [d.id for d in self.devices]
        select.value = current if current in ids else ids[0]
        self.refresh_form()
        if self.autostart:
            self.autostart = False
            self.call_after_refresh(self.action_run)

    # ---- the form --------------------------------------------------------------------
    @on(Select.Changed, "#source")
    def _on_source(self, event: Select.Changed) -> None:
        self._source_changed(str(event.value))

    def _source_changed(self, source: str) -> None:
        architecture = source == "architecture"
        path = self.query_one("#path", Input)
        path.disabled = architecture
        path.placeholder = (
            "script.py ARGS… or -m module ARGS…"
            if source == "script"
            else "config.json or checkpoint folder"
        )
        self.query_one("#model-table", DataTable).set_class(not architecture, "-off")
        for field in SHAPE_FIELDS:  # a program chooses its own model, budget and device
            self.query_one(f"#{field}").disabled = source == "script"
        self.refresh_form()

    @on(DataTable.RowHighlighted, "#model-table")
    @on(Select.Changed)
    @on(Input.Changed)
    @on(Checkbox.Changed)
    def refresh_form(self) -> None:
        """Read the form, show each field's error (or none), the model's facts, and ask
        for the prediction of the run it describes and its plan for the card chosen."""
        self._read_form()
        run = self.form.run
        spec = run.spec if run is not None else None
        training = self._training()
        train = self.train.spec if training else None
        if training and train is None:
            spec = None  # the recipe's fields are wrong: nothing to plan yet
        self.query_one(PlanInfo).ask(self._value("plan"), spec, train)

    def on_card_plan_shown(self, message: CardPlanShown) -> None:
        """The catalogue with each model's mark for the card planned for (or none)."""
        self.query_one("#models").set_class(message.title is not None, "-plan")
        table = self.query_one(ModelTable)
        table.border_subtitle = message.status
        table.show_plan(message.title, message.marks, message.pending)

    def _read_form(self) -> None:
        fields = self.query_one("#fields")
        show_rows(fields, self._training(), self._value("quant"), self._value("cache"))
        if self._value("source") == "script":
            self._script_form()
            return
        self.form = read_form(self.values(), self.base, self.found)
        run = self.form.run
        self._show_model_facts(run)
        if not self._training():
            self.show_errors(self.form.errors)
            self.query_one(PredictionLine).ask(run, self.found)
            return
        self.train = read_train(train_values(fields), run, self.train_base)
        self.show_errors({**self.form.errors, **self.train.errors})
        self.query_one(PredictionLine).say("no prediction for fine-tuning on this screen")

    def _training(self) -> bool:
        return self._value("workload") == "fine-tune" and self._value("source") != "script"

    def _show_model_facts(self, run: ResolvedRun | None) -> None:
        info = self.query_one("#model-info", Static)
        if self._value("source") != "architecture":
            info.update("model: from the config or checkpoint at Path")
            return
        model = CATALOGUE.get(self._model())
        if model is None:
            info.update("no catalogue model matches the filter")
            return
        if run is not None:
            info.update(model_facts(model, run.dtype, run.spec.batch, run.spec.quant))
            return
        device = self._value("device")
        backend = backend_of(self.found.best() if device == "auto" else device)
        dtype = self._value("dtype")
        dtype = resolve_dtype(None if dtype == "auto" else dtype, backend)
        info.update(model_facts(model, dtype, quant=self._value("quant")))

    def on_prediction_ready(self, message: PredictionReady) -> None:
        """The form's run predicted (the prediction line has shown it)."""
        self._begin_if_predicted()

    def _script_form(self) -> None:
        """Your own program: only its command line is read (and checked)."""
        self.form = FormResult(None, {})
        try:
            program_from_text(self.query_one("#path", Input).value)
            errors: dict[str, str] = {}
        except UsageError as exc:
            errors = {"path": str(exc)}
        self.show_errors(errors)
        self.query_one("#model-info", Static).update(
            "model: whatever your program loads; every generate() is recorded"
        )
        self.query_one(PredictionLine).say(
            "no prediction: vramtui does not choose your program's model"
        )

    @on(DataTable.RowSelected, "#model-table")
    def _on_model_chosen(self) -> None:
        self.query_one("#tokens", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#run")
    def action_run(self) -> None:
        if self._value("source") == "script":
            try:
                program = program_from_text(self.query_one("#path", Input).value)
            except UsageError as exc:
                self.show_error(str(exc), "path")
                return
            host_of(self).begin_program(program)
            return
        self.refresh_form()
        if self._training():
            self._start_training()
            return
        run = self.form.run
        if run is None:
            self._focus_first_error()
            return
        if run.backend != "cpu":
            host_of(self).begin(run)
            return
        self._run_when_predicted = run
        self._begin_if_predicted()

    def _start_training(self) -> None:
        """The app fine-tunes the recipe the form describes (checked first)."""
        spec = self.train.spec
        if spec is None:
            self._focus_first_error()
            return
        host_of(self).start_training(spec)

    def _begin_if_predicted(self) -> None:
        """A CPU run starts once its prediction is in (typing never waits for it); one
        predicted not to fit the RAM available asks first."""
        run = self._run_when_predicted
        predicted = self.query_one(PredictionLine).of(run) if run is not None else None
        if run is None or predicted is None:
            return  # its prediction is on its way
        self._run_when_predicted = None
        check = predicted.ram
        if check is None or check.fits:
            host_of(self).begin(run)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                host_of(self).begin(run)

        self.app.push_screen(ConfirmRunScreen(confirm_text(run_name(run.spec), check)), answered)

    def values(self) -> FormValues:
        """The form as text; fine-tuning's model with its generation fields passing (a
        training run has no token budget and no KV cache)."""
        generate = not self._training()
        return FormValues(
            model=self._model(),
            source=self._value("source"),
            path=self.query_one("#path", Input).value,
            tokens=self.query_one("#tokens", Input).value if generate else "1",
            prompt_tokens=self.query_one("#prompt_tokens", Input).value if generate else "1",
            batch=self.query_one("#batch", Input).value,
            dtype=self._value("dtype"),
            attn=self._value("attn"),
            device=self._value("device"),
            cache=self._value("cache") if generate else "dynamic",
            quant=self._value("quant"),
            double_quant=self.query_one("#double_quant", Checkbox).value,
            cache_bits=self._value("cache_bits"),
        )

    def _value(self, field: str) -> str:
        return str(self.query_one(f"#{field}", Select).value)

    def _model(self) -> str:
        """The highlighted model ('' when the filter leaves none)."""
        return self.query_one(ModelTable).model()

    @property
    def _shown(self) -> list[str]:
        """The model list's rows, as filtered."""
        return self.query_one(ModelTable).shown

    def read_spec(self) -> RunSpec:
        """The spec the form describes (its errors, if any, are shown)."""
        self.refresh_form()
        if self.form.run is None:
            raise ValueError("; ".join(self.form.errors.values()))
        return self.form.run.spec

    def show_errors(self, errors: dict[str, str]) -> None:
        """Each message under its place; every other place cleared (but for the engine's
        refusal of the form as it still is)."""
        if self._refusal is not None:
            place, message, refused = self._refusal
            if self.values() == refused:
                errors = {**errors, place: message}
            else:
                self._refusal = None
        for place in PLACES:
            widget = self.query_one(f"#{place}-error", Static)
            message = errors.get(place, "")
            widget.update(Text(message))  # as it is: `.[quant]` is no markup
            widget.set_class(bool(message), "-shown")

    def show_error(self, message: str, field: str | None = None) -> None:
        """An error from outside the form (the engine refused the run) in its place."""
        self._refusal = (place_of(field), message, self.values())
        self.show_errors(self.form.errors)
        self._focus_first_error()

    def _focus_first_error(self) -> None:
        for place in PLACES:
            if self.query_one(f"#{place}-error", Static).has_class("-shown"):
                focus = {"model": "#model-table", "form": "#run"}.get(place, f"#{place}")
                widget = self.query_one(focus)
                if not widget.disabled:
                    widget.focus()
                return
