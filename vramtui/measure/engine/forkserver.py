"""A fork server for sweeps: one process imports torch and transformers once, and
every engine of the sweep is forked from it (zygote.py), ready in milliseconds.

Engines started ahead (spare.py) otherwise import beside the running cell, and
on a GPU box that slowed its decoding (benchmarks/results/fast_start/). Forked
engines import nothing: the server's imports are done once, at the start, and
nothing runs beside a cell but idle processes. Each engine is still a fresh
process: the server never touches CUDA, so the engine's CUDA context, caching
allocator and figures are its own, exactly as a spawned engine's.

`ForkServer.make_engine(launch)` is an EngineFactory (spare.py, recorder.py): an
engine forked from the server where `launch` is the server's, a spawned one
otherwise, and also once the server has died. The parent ends the server with
`close()`; if the parent dies the server sees its stdin close and exits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from typing import Any

from vramtui.measure.engine.engine_process import EngineGone, EngineProcess, Launch, clock
from vramtui.measure.startup import COLD, FORKED


class ForkServer:
    """The server process, its socket and what it has told about its engines."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.spawned_at = clock()
        command = [launch.python, "-m", "vramtui.measure.engine.zygote"]
        command += ["--socket-fd", str(theirs.fileno()), "--spawned-at", repr(self.spawned_at)]
        self._log = open(os.devnull, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=self._log, stderr=self._log,
            pass_fds=(theirs.fileno(),), start_new_session=True, env=dict(launch.env),
        )  # fmt: skip
        theirs.close()
        self._cond = threading.Condition()
        self._pids: dict[int, int] = {}  # request token -> engine pid
        self._exits: dict[int, int] = {}  # engine pid -> exit code
        self._gone = False
        self._tokens = 0
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="forkserver", daemon=True).start()

    @property
    def alive(self) -> bool:
        with self._cond:
            return not self._gone

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._gone = True
                    self._cond.notify_all()
                    return
                message = json.loads(data)
                if "token" in message:
                    self._pids[message["token"]] = message["pid"]
                elif "exit" in message:
                    self._exits[message["exit"]] = message["code"]
                self._cond.notify_all()

    def fork(self, stdin: int, log: int, events: int) -> int:
        """An engine with these descriptors as its stdin, log and events pipe: its pid,
        once the server has forked it (the first waits for the server's imports).
        EngineGone if the server has ended."""
        with self._send_lock:
            self._tokens += 1
            token = self._tokens
            request = json.dumps({"token": token}).encode()
            try:
                socket.send_fds(self._sock, [request], [stdin, log, events])
            except OSError as exc:
                raise EngineGone(f"the fork server has ended: {exc}") from None
        with self._cond:
            self._cond.wait_for(lambda: token in self._pids or self._gone)
            if token not in self._pids:
                raise EngineGone("the fork server has ended")
            return self._pids.pop(token)

    def exit_code(self, pid: int, timeout: float | None = None) -> int | None:
        """The engine's exit code once it has ended (within `timeout`), else None. If the
        server died first, its engines went to init and their codes are lost: an engine
        is then reported ended by SIGKILL (-9) once its pid is gone."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self._gone, timeout)
            if pid in self._exits:
                return self._exits.pop(pid)  # read once (ForkedProcess keeps it): pids recur
            if not self._gone:
                return None
        deadline = None if timeout is None else clock() + timeout
        while _exists(pid):
            if deadline is not None and clock() >= deadline:
                return None
            time.sleep(0.05)  # no status to wait on: the process is not our child
        return -9

    def make_engine(self, launch: Launch) -> EngineProcess:
        if launch == self.launch and self.alive:
            return ForkedEngine(self, launch)
        return EngineProcess(launch)

    def close(self) -> None:
        """End the server (engines already forked carry on). Safe to call twice. Its
        stdin closed ends it once it listens; SIGTERM ends it while still importing."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        for stop in (None, self.proc.terminate, self.proc.kill):
            if stop is not None:
                stop()
            try:
                self.proc.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        self._sock.close()
        self._log.close()


def _exists(pid: int) -> bool:
    """Whether `pid` still runs. An orphaned engine may have been handed to this very
    process (PID 1 in a container, a subreaper): reap it then; a zombie has ended."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: init (or another reaper) will reap it
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        pass  # no /proc (macOS), or gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ForkedProcess:
    """What EngineProcess needs of a Popen, for an engine forked by the server."""

    def __init__(self, server: ForkServer, pid: int, stdin: Any) -> None:
        self.server, self.pid, self.stdin = server, pid, stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"engine {self.pid}", timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass  # ended, its status not read yet

    def kill(self) -> None:
        self.send_signal(9)


class ForkedEngine(EngineProcess):
    """An engine process forked by a ForkServer, used exactly as a spawned one."""

    start_kind = FORKED

    def __init__(self, server: ForkServer, launch: Launch) -> None:
        super().__init__(launch)
        self.server = server

    def spawn(self) -> None:
        """Forked by the server; spawned as any engine where the server has ended."""
        stdin_r, stdin_w = os.pipe()
        events_r, events_w = os.pipe()
        self.spawned_at = clock()
        try:
            pid = self.server.fork(stdin_r, self._stderr.fileno(), events_w)
        except EngineGone:
            os.close(stdin_w)
            os.close(events_r)
            self.start_kind = COLD
            super().spawn()
            return
        finally:
            os.close(stdin_r)
            os.close(events_w)
        self.proc = ForkedProcess(self.server, pid, os.fdopen(stdin_w, "wb"))
        self._reader = os.fdopen(events_r, "r", encoding="utf-8")
