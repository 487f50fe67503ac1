"""Feed the app from a list of events instead of an engine: tests, demos, replays.

`ReplayRecorder` has the Recorder's shape (`.session`, `.run()`, `.cancel()`),
so the app cannot tell it from a real run. `tui.synthetic.synthetic_run` makes a
plausible, fully deterministic event stream for a catalogue model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from vramtui.measure import events as ev
from vramtui.measure.session import DeviceNvml, Environment, NvmlSample, Session
from vramtui.runspec import ResolvedRun
from vramtui.runspec.program_spec import SessionSpec
from vramtui.testing.synthetic import Item

FIXED_ENVIRONMENT = Environment(vramtui="0.1.0", platform="Linux (synthetic)", hostname="replay")


def _time_of(item: Item) -> float | None:
    return getattr(item, "t", None)


class ReplayRecorder:
    """Replays `items` into a Session with the times they carry.

    delay=None applies every item at once when the recorder is made, so the
    app's first frame already shows them (deterministic screenshots); a number
    applies them in `run()`, sleeping that long between token samples (a demo).
    hold=True keeps `run()` going after the last item until `cancel()`, like a
    generation still in progress.
    """

    def __init__(
        self,
        spec: SessionSpec | ResolvedRun,
        items: Sequence[Item],
        *,
        environment: Environment | None = None,
        t0: float = 0.0,
        delay: float | None = None,
        hold: bool = False,
    ) -> None:
        spec = spec.spec if isinstance(spec, ResolvedRun) else spec
        self.spec = spec
        self.session = Session(spec, environment or FIXED_ENVIRONMENT, t0=t0)
        self.items = list(items)
        self.delay = delay
        self.hold = hold
        self._cancelled = threading.Event()
        self._cancel_reason = "cancelled by the user"
        self._last_t = t0
        if delay is None:
            self._apply_all(self.items)

    def _apply(self, item: Item) -> None:
        session = self.session
        t = _time_of(item)
        if t is not None:
            self._last_t = max(self._last_t, t)
        if isinstance(item, NvmlSample):
            session.add_nvml(item)
            return
        if isinstance(item, DeviceNvml):
            session.add_nvml(item.sample, item.device)
            return
        session.apply(item)
        if isinstance(item, ev.Hello) and item.backend != "cuda":
            session.notice(f"no NVML on {item.backend}: figures are {item.memory_source}")
        if session.snapshot().finished:
            session.end_at(self._last_t)  # the stream's clock, not the wall's

    def _apply_all(self, items: Iterable[Item]) -> None:
        for item in items:
            self._apply(item)

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        if self.delay is not None:
            for item in self.items:
                if self._cancelled.is_set():
                    break
                self._apply(item)
                if on_event is not None and not isinstance(item, (NvmlSample, DeviceNvml)):
                    on_event(item)
                if isinstance(item, ev.Sample) and item.token is not None:
                    time.sleep(self.delay)
        if self.hold and not self.session.snapshot().finished:
            self._cancelled.wait()
        view = self.session.snapshot()
        if not view.finished:
            token = view.tokens_done - 1 if view.tokens_done else None
            failed = ev.Failed("cancelled", self._cancel_reason, view.current_phase, token)
            self.session.fail(failed)
            self.session.end_at(self._last_t)
        return self.session

    def cancel(self, reason: str = "cancelled by the user") -> None:
        self._cancel_reason = reason
        self._cancelled.set()
