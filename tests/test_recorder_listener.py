"""A listener that fails (a progress line on a closed stderr) costs the run nothing."""

from __future__ import annotations

from collections.abc import Iterator

from vramtui.measure import events as ev
from vramtui.measure.child_process import ChildProcess
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session
from vramtui.runspec import RunSpec


class PlayedChild:
    """A child that has already run: its events, then exit code 0."""

    pid = None

    def __init__(self, events: list[ev.Event]) -> None:
        self._events = events

    def events(self) -> Iterator[ev.Event]:
        yield from self._events

    def wait(self) -> int:
        return 0

    def terminate(self, grace_s: float = 5.0) -> None:
        pass

    def close(self) -> None:
        pass

    def stderr_tail(self, lines: int = 3) -> str:
        return ""


def test_a_failing_listener_is_dropped_and_the_run_is_recorded_to_the_end() -> None:
    played: list[ev.Event] = [
        ev.Phase("load", 0.0),
        ev.Phase("decode", 1.0),
        ev.Done(0, 1.0, 0.1, 0.0, 0.1, 0.0, None),
    ]
    child: ChildProcess = PlayedChild(played)
    recorder = Recorder(lambda: (child, None), Session(RunSpec(device="cpu")), use_nvml=False)
    told: list[ev.Event] = []

    def listener(event: ev.Event) -> None:
        told.append(event)
        raise BrokenPipeError(32, "Broken pipe")

    view = recorder.run(listener).snapshot()
    assert told == played[:1]  # told once, then no more
    assert view.status == "completed"
    assert [p.name for p in view.phases] == ["load", "decode"]
    assert any("stopped telling" in n and "BrokenPipeError" in n for n in view.notices)
