"""The parent's handle on one engine process. Imports neither torch nor transformers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from vramtui.measure import events as ev
from vramtui.spec import RunSpec


class EngineProcess:
    """Spawn `python -m vramtui.measure.engine.child` for one spec and read its events.

    The engine runs in its own process session, so a Ctrl+C in the terminal
    reaches the parent only, which then ends the engine deliberately; if the
    parent dies, the engine sees its stdin close and exits by itself.
    """

    def __init__(
        self,
        spec: RunSpec,
        *,
        python: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()
        self._reader = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            TOKENIZERS_PARALLELISM="false",
            TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        )
        if not self.spec.allow_download:
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.update(self.extra_env)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "vramtui.measure.engine.child", "--events-fd", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=self._stderr,
                stderr=self._stderr,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=env,
            )
        finally:
            os.close(write_fd)
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(self.spec.to_dict()) + "\n").encode())
        self.proc.stdin.flush()  # stdin stays open: closing it tells the engine to exit

    def events(self) -> Iterator[ev.Event]:
        """Events as they arrive, until the engine closes its end of the pipe."""
        assert self._reader is not None
        for line in self._reader:
            line = line.strip()
            if not line:
                continue
            try:
                yield ev.decode(line)
            except ev.WireError:
                continue

    def terminate(self, grace_s: float = 1.5) -> None:
        """End the engine: SIGTERM, then SIGKILL after grace_s. Safe to call twice."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._close()
        return code

    def _close(self) -> None:
        if self.proc and self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        self.terminate()
        self._close()
        self._stderr.close()
