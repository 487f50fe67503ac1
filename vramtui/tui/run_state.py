"""One run as the app sees it: the spec, the data source, the session, what became of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vramtui import events as ev
from vramtui.session import Session
from vramtui.spec import RunSpec
from vramtui.tui.storage import Saved


class RecorderLike(Protocol):
    """What the app needs of a data source: vramtui.recorder.Recorder, or a replay."""

    session: Session

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session: ...

    def cancel(self) -> None: ...


RecorderFactory = Callable[[RunSpec], RecorderLike]


def default_recorder(spec: RunSpec) -> RecorderLike:
    """A real run: a fresh engine process (imported here, not at app start)."""
    from vramtui.recorder import Recorder

    return Recorder(spec)


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
