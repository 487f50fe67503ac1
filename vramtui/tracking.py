"""`vramtui.track()`: record a block of a program (a notebook cell) in its own process.

    import vramtui

    with vramtui.track(json="chat.json", csv="chat.csv"):
        model = AutoModelForCausalLM.from_pretrained(...)
        model.generate(...)

or as a decorator, `@vramtui.track(json="chat.json")`. Inside the block every
generate() is recorded token by token and every from_pretrained/from_config
is a load phase, through the same hooks as `vramtui profile`; NVML is polled
from a thread on CUDA, the process's RSS sampled on the CPU. On leaving the
block the session is written where asked (or to the sessions folder when
nothing is asked) and `vramtui show` reads it. Unlike `profile`, the figures
are the whole process's as it is: whatever ran before the block is in them.
"""

from __future__ import annotations

import os
import sys
from contextlib import ContextDecorator
from datetime import datetime
from pathlib import Path
from types import TracebackType

from vramtui.measure import events as ev
from vramtui.measure.recorder import Recorder, base_environment
from vramtui.measure.script.hooks import Instrument
from vramtui.measure.script.program_process import Program
from vramtui.measure.session import Session, SessionView
from vramtui.runspec.program_spec import ProgramSpec

_active: list[Tracker] = []


class SessionInstrument(Instrument):
    """The hooks, with events applied straight to the recorder's session (no pipe)."""

    def __init__(self, recorder: Recorder, *, hz: float) -> None:
        super().__init__(lambda line: None, hz=hz)
        self.recorder = recorder

    def emit(self, event: ev.Event) -> None:
        with self._lock:
            self.recorder.session.apply(event)
        if isinstance(event, ev.Hello):
            self.recorder._on_hello(event)  # NVML of this very process, from a thread


class Tracker(ContextDecorator):
    """What `track()` returns: a context manager, and a decorator."""

    def __init__(
        self,
        json: str | Path | None = None,
        csv: str | Path | None = None,
        *,
        name: str = "track",
        out: str | Path | None = None,
        hz: float = 20.0,
        nvml_hz: float = 50.0,
    ) -> None:
        self.json, self.csv = json, csv
        self.name, self.out, self.hz, self.nvml_hz = name, out, hz, nvml_hz
        self.recorder: Recorder | None = None
        self.instrument: SessionInstrument | None = None
        self.saved: list[Path] = []

    @property
    def session(self) -> SessionView | None:
        """The session so far (a frozen snapshot), or None before the block."""
        return self.recorder.session.snapshot() if self.recorder is not None else None

    def __enter__(self) -> Tracker:
        if _active:
            raise RuntimeError("vramtui.track() is already recording in this process")
        # the block of this very program: its spec names the program that runs it
        spec = ProgramSpec(self.name, sys.argv[0] if sys.argv else "", source="track")
        environment = base_environment().updated(engine_pid=os.getpid())
        session = Session(spec, environment)
        recorder = Recorder.for_program(
            Program((self.name,)), session=session, nvml_hz=self.nvml_hz
        )
        recorder.take_baseline()
        self.recorder = recorder
        self.instrument = SessionInstrument(recorder, hz=self.hz)
        self.instrument.install()
        self.instrument.start()
        _active.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _active.remove(self)
        instrument, recorder = self.instrument, self.recorder
        assert instrument is not None and recorder is not None
        if exc is None:
            instrument.training.finish()  # the block's last training step, if it trained
            instrument.stop()
            instrument.enter("done")
            instrument.emit(instrument.done_event())
        else:
            from vramtui.measure.script.program_main import record_failure

            record_failure(instrument, exc)
            instrument.stop()
        recorder.stop_watching()
        self.saved = self._write(recorder.session.snapshot())

    def _write(self, view: SessionView) -> list[Path]:
        from vramtui.report.export import write_csv, write_json
        from vramtui.report.sessions import autosave, sessions_dir

        if self.json is None and self.csv is None:
            folder = Path(self.out).expanduser() if self.out else sessions_dir()
            saved = autosave(view, folder, datetime.now())
            return [saved.csv, saved.json]
        written = []
        if self.csv is not None:
            written.append(write_csv(view, self.csv))
        if self.json is not None:
            written.append(write_json(view, self.json))
        return written


def track(
    json: str | Path | None = None,
    csv: str | Path | None = None,
    *,
    name: str = "track",
    out: str | Path | None = None,
    hz: float = 20.0,
) -> Tracker:
    """Record the memory of a block (or a decorated function) of this program."""
    return Tracker(json, csv, name=name, out=out, hz=hz)
