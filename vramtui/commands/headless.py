"""Plumbing for the commands: signals noted (headless and the app alike), work in a thread."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl+C, SIGTERM or SIGHUP in a headless command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def reason(self) -> str:
        """What a session records: 'interrupted by SIGTERM' (Ctrl+C is SIGINT)."""
        return f"interrupted by {self}"


@contextmanager
def interrupts_to(handler: Callable[[Interrupted], None]) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP handed to `handler` as an `Interrupted`, never raised (a
    signal that lands while a thread is starting cannot escape as a traceback). The handler
    runs in the main thread between any two bytecodes: it should only note the signal or
    hand it on. The previous handlers are back on leaving."""

    def on_signal(signum: int, frame: object) -> None:
        handler(Interrupted(signum))

    old = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def interrupts_noted(caught: list[Interrupted]) -> AbstractContextManager[None]:
    """SIGINT, SIGTERM and SIGHUP noted in `caught`."""
    return interrupts_to(caught.append)


def run_in_thread(
    work: Callable[[], T], on_interrupt: Callable[[Interrupted], None]
) -> tuple[T | None, Interrupted | None]:
    """Run `work` in a thread; on a signal, call `on_interrupt` and wait for it to end."""
    result: list[T] = []
    error: list[BaseException] = []
    finished = threading.Event()

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)
        finally:
            finished.set()

    thread = threading.Thread(target=target, name="vramtui-run", daemon=True)
    caught: list[Interrupted] = []
    handled = 0
    with interrupts_noted(caught):
        thread.start()
        while True:
            done = finished.wait(0.1)  # a signal is seen within 0.1 s
            for exc in caught[handled:]:
                handled += 1
                on_interrupt(exc)
            if done:
                break
    if error:
        raise error[0]
    return (result[0] if result else None), (caught[0] if caught else None)


def stderr_line(text: str) -> None:
    write_stderr(text + "\n")


def write_stderr(text: str) -> None:
    """Progress and messages on stderr. Once its reader is gone (`vramtui run 2>&1 |
    head`) they go nowhere, and the run goes on to be measured and kept."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, or a closed stream
        quiet_stderr()


def quiet_stderr() -> None:
    """stderr's reader is gone: what is written to it from now on goes nowhere."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    try:
        os.dup2(devnull.fileno(), sys.stderr.fileno())
    except (OSError, ValueError):
        pass  # no file descriptor (a test's captured stderr)
    sys.stderr = devnull
