"""One run as the app sees it: the spec, the data source, the session, what became of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from vramtui.measure import events as ev
from vramtui.measure.session import Session, SessionView
from vramtui.report.sessions import Saved
from vramtui.runspec import ResolvedRun, RunSpec
from vramtui.runspec.train_spec import TrainSpec
from vramtui.tui.train_view import TrainPrediction


class RecorderLike(Protocol):
    """What the app needs of a data source: vramtui.measure.recorder.Recorder, or a replay."""

    session: Session

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session: ...

    def cancel(self, reason: str = ...) -> None: ...


RecorderFactory = Callable[[ResolvedRun], RecorderLike]
TrainerFactory = Callable[[ResolvedRun, TrainSpec], RecorderLike]  # a training run's source
# a training run's estimate (predict/training's estimate_train_run), shown beside it
Predictor = Callable[[ResolvedRun, TrainSpec], TrainPrediction]


def train_estimate(run: ResolvedRun, spec: TrainSpec) -> TrainPrediction:
    """The training estimate drawn beside a training run (imported when first asked: the
    estimate traces the step in a child process, off the UI thread)."""
    from vramtui.predict.training.replay import estimate_train_run

    return estimate_train_run(run, spec)


def fresh_trainer(run: ResolvedRun, spec: TrainSpec) -> RecorderLike:
    """A training run in a fresh engine process, as `vramtui train` runs it."""
    from vramtui.measure.recorder import Recorder

    return Recorder.for_run(run, train=spec)


class SpareEngines:
    """The app's real data source: a fresh engine process a run, a spare engine started
    ahead where one fits (the recorder is imported on the first run, not at app start)."""

    def __init__(self) -> None:
        from vramtui.measure.engine.spare import SparePool

        self.pool = SparePool()

    def prepare_for(self, spec: RunSpec) -> None:
        """Start a spare for runs like `spec` (the environment it needs), if none is there.
        Popen only: the imports go on in the spare, the caller does not wait."""
        from vramtui.measure.engine.engine_process import Launch

        try:
            self.pool.prepare(Launch.for_spec(spec))
        except OSError:  # no spare: runs start cold, as they would without one
            pass

    def recorder(self, run: ResolvedRun) -> RecorderLike:
        from vramtui.measure.recorder import Recorder

        return Recorder.for_run(run, spares=self.pool)

    def trainer(self, run: ResolvedRun, spec: TrainSpec) -> RecorderLike:
        """A training run of `spec` (its base model `run`), on a spare engine if one fits."""
        from vramtui.measure.recorder import Recorder

        return Recorder.for_run(run, train=spec, spares=self.pool)

    def close(self) -> None:
        self.pool.close()


def measured_nothing(view: SessionView) -> bool:
    """Whether a session holds no measurement of its run: no token generated, no
    training step told, no model loaded for training (a run refused as it began)."""
    trained = view.train_steps or view.train_loaded is not None
    return not view.tokens_done and not trained


@dataclass
class ActiveRun:
    spec: RunSpec
    recorder: RecorderLike
    train: TrainSpec | None = None  # a training run's recipe (spec is its base model)
    cancelling: bool = False
    ended: bool = False  # the worker has returned and the session is final
    saved: Saved | None = None
    save_error: str | None = None

    @property
    def session(self) -> Session:
        return self.recorder.session

    @property
    def running(self) -> bool:
        return not self.ended

    def form_spec(self, budget: RunSpec) -> RunSpec:
        """What the start form reopens with after this run: its spec; after a training
        run, the model it trained with `budget`'s generation (its base generates nothing)."""
        if self.train is None:
            return self.spec
        tokens, prompt = budget.tokens, budget.prompt_tokens
        return replace(self.spec, tokens=tokens, prompt_tokens=prompt, prompt=budget.prompt)
