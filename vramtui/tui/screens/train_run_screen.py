"""The run screen for a training session: memory on a step axis, the phases of each step
marked (the saw-tooth of activations saved in forward and freed in backward), the status
line counting steps, and the breakdown in training's terms (weights frozen and
trainable, gradients, optimizer states, activations, transients, slack, context)."""

from __future__ import annotations

from collections.abc import Callable

from textual import work

from vramtui.measure.session import SessionView
from vramtui.measure.train_summary import phase_peaks
from vramtui.predict.estimator import Estimate
from vramtui.runspec.train_spec import TRAIN_PHASES, TrainSpec
from vramtui.tui.plotdata import TRAIN_AXES
from vramtui.tui.run_state import ActiveRun
from vramtui.tui.screen_text import duration, phase_text, short_bytes
from vramtui.tui.screens.run_screen import RunScreen, Shown
from vramtui.tui.train_view import (
    TrainPrediction,
    predicted_steps,
    steps_axis_end,
    train_breakdown,
    train_eta,
    train_rate,
)
from vramtui.tui.widgets.breakdown_panel import BreakdownPanel
from vramtui.units import format_count


def step_shown(session: SessionView) -> int:
    """The step the status line names: the one running; the one a failure or a cancel
    stopped in; else the last one done (0 before the first)."""
    done = len(session.train_steps)
    if session.current_phase in TRAIN_PHASES:
        return done + 1
    failure = session.failure
    if failure is not None and failure.phase in TRAIN_PHASES:
        return failure.token or done + 1
    return done


def train_status(session: SessionView, now: float | None, cancelling: bool = False) -> str:
    """backward │ step 2/3 │ 1534.2 tok/s │ elapsed 0:12 │ ETA 0:05 (a profiled
    program's: step 2, no count asked for and no ETA)"""
    spec = session.spec
    # a profiled program's steps: as many as it runs, not known ahead
    requested = spec.steps if isinstance(spec, TrainSpec) else None
    rate = train_rate(session)
    if session.finished:
        eta = "done" if session.status == "completed" else "–"
    else:
        left = train_eta(session, requested) if requested is not None else None
        eta = duration(left) if left is not None else "–"
    parts = [
        phase_text(session, cancelling),
        f"step {step_shown(session)}" + (f"/{requested}" if requested is not None else ""),
        f"{rate:.1f} tok/s" if rate else "– tok/s",
        f"elapsed {duration(session.elapsed(now))}",
        f"ETA {eta}",
    ]
    return " │ ".join(parts)


def train_facts(view: SessionView, prediction: TrainPrediction | None = None) -> str:
    """What trains, each phase's peak so far with the step it was reached in, and the
    steady step's predicted peak where there is a prediction."""
    loaded = view.train_loaded
    if loaded is None:
        return "loading the model…" if view.hello else "starting the engine…"
    total = loaded.trainable_params + loaded.frozen_params
    trained = format_count(loaded.trainable_params)
    lines = [f"{trained} of {format_count(total)} params train" if loaded.frozen_params else
             f"all {format_count(total)} params train"]  # fmt: skip
    peaks = phase_peaks(view.train_steps)
    if peaks:
        lines.append("phase peaks (step)")
    for phase in TRAIN_PHASES:
        if phase in peaks:
            lines.append(f"{phase:<10}{short_bytes(peaks[phase].value):>9}  ({peaks[phase].step})")
    if prediction is not None:
        peak = short_bytes(prediction.peak_allocated_bytes)
        lines.append(f"predicted {peak} in {prediction.peak_phase}")
    return "\n".join(lines)


class TrainRunScreen(RunScreen):
    """The run screen, on the step axis (x: step, then seconds), with training's parts."""

    axes = TRAIN_AXES

    def __init__(
        self,
        run: ActiveRun,
        redraw_hz: float = 4.0,
        predict: Callable[[], TrainPrediction] | None = None,
    ) -> None:
        super().__init__(run, redraw_hz)
        self.predict = predict  # the training estimate, made off the UI thread once
        self.prediction: TrainPrediction | None = None

    def on_mount(self) -> None:
        super().on_mount()
        if self.predict is not None:
            self._predict(self.predict)

    @work(thread=True, group="trace", exit_on_error=False)
    def _predict(self, predict: Callable[[], TrainPrediction]) -> None:
        try:
            prediction = predict()
        except Exception as exc:  # noqa: BLE001 - a model the estimate cannot trace
            self.app.call_from_thread(self.notify, f"no training estimate: {exc}", timeout=4)
            return
        self.app.call_from_thread(self._predicted, prediction)

    def _predicted(self, prediction: TrainPrediction) -> None:
        self.prediction = prediction
        self._plot_key = None  # the plot redrawn with its line
        self.redraw()

    def estimate(self, view: SessionView) -> Estimate | None:
        return None  # a generation's estimate says nothing of a training step

    def predicted_curve(self, view: SessionView, points: int) -> list[tuple[int, int]] | None:
        if self.prediction is None or self.axis != "steps":
            return None
        return predicted_steps(self.prediction, int(steps_axis_end(view)))

    def facts(self, session: SessionView, room: int | None) -> str:
        return train_facts(session, self.prediction)

    def status_line(self, session: SessionView, now: float) -> str:
        return train_status(session, now, self.run.cancelling)

    def show_breakdown(self, session: SessionView, cpu: bool) -> None:
        show_train_breakdown(self, session)


def show_train_breakdown(screen: RunScreen, session: SessionView) -> None:
    """The breakdown panel in training's terms (a training run's, or a program's that
    trains)."""
    panel = screen.query_one("#breakdown", BreakdownPanel)
    parts = train_breakdown(session)
    shown: Shown = (parts.title, parts.rows, parts.total, "", False)
    if screen._changed("breakdown", (shown, panel.size.width)):
        panel.show(*shown)
