"""The process a `Recorder` drives: an engine for a spec, or the user's profiled program.

`ChildProcess` is what the recorder needs of either, once started: its PID, its
events, how it ended, how to end it. `ChildHandle` is what both share: the Popen,
the events pipe read line by line, and the way a child is ended (a polite signal
first, SIGKILL last), waited for and closed.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator, Sequence
from typing import IO, Protocol

from vramtui.measure import events as ev

KILLED_WAIT_S = 5.0  # how long a SIGKILLed child is waited for, at most


class ChildProcess(Protocol):
    """A started child, as the recorder drives it."""

    @property
    def pid(self) -> int | None: ...

    def events(self) -> Iterator[ev.Event]:
        """Its events as they arrive, until it closes its end of the pipe."""
        ...

    def wait(self) -> int:
        """Block until it has ended; its exit code (-N: killed by signal N)."""
        ...

    def terminate(self, grace_s: float = ...) -> None:
        """End it, politely first. Safe to call twice, and from another thread."""
        ...

    def close(self) -> None:
        """End it if it still runs, and release what the parent holds of it."""
        ...

    def stderr_tail(self, lines: int = ...) -> str:
        """Its last lines of output, where the parent kept them."""
        ...


class Popened(Protocol):
    """What a child handle needs of its process: a Popen, or a forked engine's stand-in."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


def end_process(proc: Popened, steps: Sequence[int | None], grace_s: float) -> None:
    """Send each of `steps` in turn (None: send nothing, just wait) until `proc` has
    ended, waiting `grace_s` after each (a SIGKILL up to KILLED_WAIT_S)."""
    if proc.poll() is not None:
        return
    for send in steps:
        try:
            if send is not None:
                proc.send_signal(send)
            proc.wait(timeout=KILLED_WAIT_S if send == signal.SIGKILL else grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class ChildHandle:
    """The parent's side of one child process: its Popen and the events it writes.

    Subclasses start the process (setting `proc` and `_reader`), say how it is
    ended (`stop_signals`), and keep its output (`stderr_tail`).
    """

    # How the child is ended: each in turn, `grace_s` apart (None: wait, send nothing).
    stop_signals: tuple[int | None, ...] = (signal.SIGTERM, signal.SIGKILL)

    def __init__(self) -> None:
        self.proc: Popened | None = None
        self._reader: IO[str] | None = None  # the events pipe, once started

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has ended and been waited for; None before."""
        return self.proc.returncode if self.proc is not None else None

    def _decode(self, line: str) -> ev.Event | None:
        """The event on one line of the pipe; None for a blank or unreadable line."""
        line = line.strip()
        if not line:
            return None
        try:
            return ev.decode(line)
        except ev.WireError:
            return None

    def events(self) -> Iterator[ev.Event]:
        """Events as they arrive, until the child closes its end of the pipe."""
        assert self._reader is not None
        for line in self._reader:
            event = self._decode(line)
            if event is not None:
                yield event

    def terminate(self, grace_s: float = 1.5) -> None:
        """End the child: `stop_signals` in turn, `grace_s` apart. Safe to call twice."""
        if self.proc is not None:
            end_process(self.proc, self.stop_signals, grace_s)

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._close()
        return code

    def _close(self) -> None:
        """Release the parent's ends of the pipes (subclasses add their own)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def stderr_tail(self, lines: int = 20) -> str:
        return ""

    def close(self) -> None:
        self.terminate()
        self._close()
