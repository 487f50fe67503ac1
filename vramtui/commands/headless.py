"""Plumbing for the headless commands: signals as exceptions, work in a thread."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
def interrupts_raise() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` in the main thread."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    old = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


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
    interrupted: Interrupted | None = None
    with interrupts_raise():
        thread.start()
        # An Event, not thread.join(timeout): on Python 3.11 a signal handler that
        # raises inside join() can leave the thread marked finished while it runs.
        while not finished.is_set():
            try:
                finished.wait(0.1)
            except Interrupted as exc:
                interrupted = interrupted or exc
                on_interrupt(exc)
    if error:
        raise error[0]
    return (result[0] if result else None), interrupted


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr)
