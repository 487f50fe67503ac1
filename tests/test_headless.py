"""The headless commands' plumbing: work in a thread, signals handed to it."""

from __future__ import annotations

import os
import signal
import threading

from vramtui.commands.headless import run_in_thread


def test_a_signal_the_moment_the_work_starts_is_handed_on_not_raised() -> None:
    # the work signals before the main thread may be back from starting it (a busy box)
    cancelled = threading.Event()

    def work() -> str:
        os.kill(os.getpid(), signal.SIGINT)
        assert cancelled.wait(60)
        return "stopped"

    result, interrupted = run_in_thread(work, lambda exc: cancelled.set())
    assert result == "stopped"
    assert interrupted is not None and interrupted.signum == signal.SIGINT
