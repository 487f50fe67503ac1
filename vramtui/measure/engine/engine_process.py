"""The parent's handle on one engine process. Imports neither torch nor transformers."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Protocol

from vramtui.measure import events as ev
from vramtui.measure.child_process import ChildHandle, Popened
from vramtui.measure.startup import COLD
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import EngineSpec

clock = time.monotonic


class EngineGone(OSError):
    """The engine process ended before it could be handed its spec."""


@dataclass(frozen=True)
class Launch:
    """What an engine process is started with, fixed before it sees a spec: the
    interpreter and the whole environment (read by torch and transformers at import).
    A spare engine serves a run only if the run's Launch is equal to its own."""

    python: str
    env: tuple[tuple[str, str], ...]

    @classmethod
    def for_spec(
        cls, spec: RunSpec, extra_env: dict[str, str] | None = None, python: str | None = None
    ) -> Launch:
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            TOKENIZERS_PARALLELISM="false",
            TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        )
        if not spec.allow_download:
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.update(extra_env or {})
        return cls(python or sys.executable, tuple(sorted(env.items())))


class EngineProc(Popened, Protocol):
    """An engine's process: a Popen, or a forked engine's stand-in; its spec goes in on stdin."""

    @property
    def stdin(self) -> IO[bytes] | None: ...


class EngineProcess(ChildHandle):
    """Spawn `python -m vramtui.measure.engine.engine_main`, hand it one spec, read its events.

    `spawn()` starts the process (it does its imports, then waits); `hand(spec)`
    gives it the run; `start(spec)` does both. The engine runs in its own process
    session, so a Ctrl+C in the terminal reaches the parent only, which then ends
    the engine deliberately (SIGTERM, then SIGKILL); if the parent dies, the engine
    sees its stdin close and exits by itself, also while it waits for a spec.
    """

    start_kind = COLD  # a forked engine's is FORKED

    def __init__(self, launch: Launch) -> None:
        super().__init__()
        self.launch = launch
        self.proc: EngineProc | None = None
        self.spawned_at: float | None = None
        self.ready_at: float | None = None  # the engine's clock when its imports were done
        self.handed = False
        self._stderr = tempfile.TemporaryFile()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        self.spawned_at = clock()
        command = [self.launch.python, "-m", "vramtui.measure.engine.engine_main"]
        command += ["--events-fd", str(write_fd), "--spawned-at", repr(self.spawned_at)]
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=self._stderr,
                stderr=self._stderr,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=dict(self.launch.env),
            )
        finally:
            os.close(write_fd)
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8")

    def hand(self, spec: EngineSpec) -> None:
        """Give the engine its run; EngineGone if it has already ended."""
        proc = self.proc
        if proc is None or proc.stdin is None or not self.alive:
            raise EngineGone("the engine process is not running")
        try:
            proc.stdin.write((json.dumps(spec.to_dict()) + "\n").encode())
            proc.stdin.flush()  # stdin stays open: closing it tells the engine to exit
        except (BrokenPipeError, ValueError) as exc:
            raise EngineGone(f"the engine process ended: {exc}") from None
        self.handed = True

    def start(self, spec: EngineSpec) -> None:
        self.spawn()
        self.hand(spec)

    def wait_ready(self, timeout: float) -> bool:
        """Block until the engine has said Ready (imports done), up to `timeout` s.
        Only before `hand`: afterwards the events carry on from where this stopped."""
        if self.ready_at is not None:
            return True
        if self._reader is None or self.handed:
            return False
        readable, _, _ = select.select([self._reader], [], [], timeout)
        if not readable:
            return False
        line = self._reader.readline()
        self._decode(line)
        return self.ready_at is not None

    def _decode(self, line: str) -> ev.Event | None:
        """The event on `line`; a Ready is noted here and not passed on."""
        event = super()._decode(line)
        if isinstance(event, ev.Ready):
            self.ready_at = event.t
            return None
        return event

    def _close(self) -> None:
        if self.proc and self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        super()._close()

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        super().close()
        self._stderr.close()
