"""One run as the app sees it: the spec, the data source, the session, what became of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vramtui.measure import events as ev
from vramtui.measure.session import Session
from vramtui.report.sessions import Saved
from vramtui.spec import ResolvedRun, RunSpec


class RecorderLike(Protocol):
    """What the app needs of a data source: vramtui.measure.recorder.Recorder, or a replay."""

    session: Session

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session: ...

    def cancel(self, reason: str = ...) -> None: ...


RecorderFactory = Callable[[ResolvedRun], RecorderLike]


def default_recorder(run: ResolvedRun) -> RecorderLike:
    """A real run: a fresh engine process (imported here, not at app start)."""
    from vramtui.measure.recorder import Recorder

    return Recorder(run)


@dataclass
class ActiveRun:
    spec: RunSpec
    recorder: RecorderLike
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
