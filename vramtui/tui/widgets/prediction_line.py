"""The start screen's prediction of the form's run, made off the UI thread.

One prediction at a time: while one is being made, only the form's latest run waits
for its turn (typing on never queues every state it passed through), and a
prediction is shown only if the form still describes the run it was made for.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.widgets import Static

from vramtui.errors import UsageError
from vramtui.runspec import DeviceList, ResolvedRun
from vramtui.tui.messages import PredictionReady
from vramtui.tui.prediction import StartPrediction, form_prediction


class PredictionLine(Static):
    """'predicted peak …' and whether it fits; PredictionReady goes on to the screen."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._key: ResolvedRun | None = None  # the run the form describes
        self._busy = False  # a prediction worker is running
        self._pending: tuple[ResolvedRun, DeviceList] | None = None
        self.latest: tuple[ResolvedRun, StartPrediction] | None = None  # the form's, once in

    def ask(self, run: ResolvedRun | None, devices: DeviceList) -> None:
        """Predict `run` (None: the form is wrong, nothing to predict)."""
        if run is None:
            self.say("")
            return
        if run == self._key:
            return
        self._key = run
        traced = run.model is None and run.config is not None
        note = " (tracing the model's code on the meta device)" if traced else ""
        self.update(Text(f"predicting…{note}", style="dim"))
        if self._busy:
            self._pending = (run, devices)  # typing on: only the form's latest is predicted
        else:
            self._busy = True
            self.predict(run, devices)

    def say(self, text: str) -> None:
        """A line in place of a prediction."""
        self._key = None
        self.update(Text(text))
        self.remove_class("-warn", "-fits")

    def of(self, run: ResolvedRun) -> StartPrediction | None:
        """The prediction of `run`, once it is in."""
        latest = self.latest
        return latest[1] if latest is not None and latest[0] == run else None

    @work(thread=True, group="predict")
    def predict(self, run: ResolvedRun, devices: DeviceList) -> None:
        """The estimate, off the UI thread."""
        try:
            prediction = form_prediction(run, devices)
        except UsageError as exc:  # the model's code could not be traced, or placed
            prediction = StartPrediction(f"no prediction: {exc}", None)
        self.post_message(PredictionReady(run, prediction))

    def on_prediction_ready(self, message: PredictionReady) -> None:
        self._busy = False
        if self._pending is not None:
            self._busy, (run, devices), self._pending = True, self._pending, None
            self.predict(run, devices)
        key = self._key
        if key is None or message.key != key:
            message.stop()  # the form has changed since: a newer prediction is on its way
            return
        self.latest = (key, message.prediction)
        self.update(Text(message.prediction.text))  # as it is: no markup
        self.set_class(message.prediction.fits is False, "-warn")
        self.set_class(message.prediction.fits is True, "-fits")
