"""Record a tensor-parallel run: one launcher, one engine rank per device, one Session
per rank.

`RankRecorder` writes the spec to a file, listens on a Unix socket, and starts torch's
elastic launcher (tp_launch). Each rank connects and streams its events (tp_wire); each
is recorded by a `Recorder` of its own (NVML on its GPU, its allocator series, how it
ended), as a one-device run is. The launcher ends every rank when one fails; a rank
the launcher ended that way says so, and every sample already measured is kept.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError
from vramtui.measure import events as ev
from vramtui.measure.child_process import end_process
from vramtui.measure.engine.engine_process import Launch
from vramtui.measure.engine.tp_wire import EVENTS_ENV, SPEC_ENV, RankHello
from vramtui.measure.recorder import Recorder, base_environment
from vramtui.measure.session import Session, SessionView
from vramtui.measure.stderr_tail import last_lines
from vramtui.measure.tp_launch import TpLaunch, exit_codes, launch_failure
from vramtui.runspec import ResolvedRun

PEER_FAILED = "ended by the launcher when another rank failed"


class NoRanks(UsageError):
    """The launcher ended before any rank connected, for a reason of its own (not a
    port in use nor a rendezvous timeout, which are bad input): one line, exit 1."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# How a collective reads when its peer has died (gloo; NCCL reports a remote error)
_PEER_GONE = re.compile(r"remote worker|by peer|remote process exited|ncclRemoteError", re.I)


def peer_failure(event: ev.Failed) -> ev.Failed:
    """A rank's failure as it was: ended by the launcher (SIGTERM, read as cancelled) or a
    collective broken because another rank died, said so; any other as it came."""
    if event.kind == "cancelled" or (event.kind == "error" and _PEER_GONE.search(event.message)):
        return ev.Failed("crashed", PEER_FAILED, event.phase, event.token)
    return event


class Launcher:
    """The launcher's process: started in its own session (a Ctrl+C reaches vramtui,
    which ends it, and it ends its ranks), its output kept in a file."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self.ended = threading.Event()

    def wait(self) -> int:
        code = self.proc.wait()
        self.ended.set()
        return code

    def terminate(self) -> None:
        """SIGTERM to the launcher, which ends its ranks; then SIGKILL to its whole
        process group (the launcher and every rank), so that no rank outlives it."""
        end_process(self.proc, (signal.SIGTERM,), 10.0)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        end_process(self.proc, (None,), 5.0)

    def log(self) -> str:
        try:
            self._log.seek(0)
            return self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


class RankChild:
    """One rank, as its Recorder drives it: its events from the socket, its exit code
    from the launcher's report, ending it ends the launcher (and so every rank)."""

    def __init__(
        self, hello: RankHello, link: socket.socket, lines: IO[str], group: RankRecorder
    ) -> None:
        self.hello = hello
        self._link = link
        self._lines = lines  # the rank's lines after its hello
        self._group = group

    @property
    def pid(self) -> int | None:
        return self.hello.pid

    def events(self) -> Iterator[ev.Event]:
        for line in self._lines:
            try:
                event = ev.decode(line.strip())
            except ev.WireError:
                continue
            if isinstance(event, ev.Failed) and not self._group.cancelled:
                event = peer_failure(event)
            yield event

    def wait(self) -> int:
        self._group.launcher_ended.wait()
        return self._group.rank_exit_code(self.hello.pid)

    def terminate(self, grace_s: float = 1.5) -> None:
        self._group.terminate()

    def close(self) -> None:
        self._lines.close()
        self._link.close()

    def stderr_tail(self, lines: int = 20) -> str:
        return last_lines(self._group.rank_log(self.hello.local_rank), lines)


@dataclass(frozen=True)
class RankSet:
    """The ranks this node recorded, each its own session view, lowest rank first."""

    launch: TpLaunch
    views: dict[int, SessionView]

    @property
    def lead(self) -> SessionView:
        """The view the progress line and the session folder follow: the lowest rank."""
        return self.views[min(self.views)]


class RankRecorder:
    """Launch a tensor-parallel run and record each of this node's ranks."""

    def __init__(
        self,
        run: ResolvedRun,
        launch: TpLaunch,
        extra_env: dict[str, str] | None = None,
        use_nvml: bool = True,
        lead: Session | None = None,
    ) -> None:
        self.run_spec = run
        self.lead = lead  # where this node's first rank is recorded (else a new Session)
        self.launch = launch
        self.extra_env = extra_env or {}
        self.use_nvml = use_nvml
        self.sessions: dict[int, Session] = {}
        self.recorders: dict[int, Recorder] = {}
        self.launcher_ended = threading.Event()
        self._launcher: Launcher | None = None
        self._codes: dict[int, int] | None = None
        self._cancelled = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0: float | None = None
        self._folder: str | None = None  # the run's files: spec, socket, the ranks' logs

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str = "cancelled by the user") -> None:
        self._cancelled.set()
        for recorder in list(self.recorders.values()):
            recorder.cancel(reason)
        self.terminate()

    def terminate(self) -> None:
        if self._launcher is not None:
            self._launcher.terminate()

    def log(self) -> str:
        return self._launcher.log() if self._launcher is not None else ""

    def rank_log(self, local_rank: int) -> str:
        """A rank's own output, as the launcher kept it (--log-dir, --redirects)."""
        if self._folder is None:
            return ""
        found = sorted(Path(self._folder, "logs").glob(f"**/{local_rank}/stderr.log"))
        try:
            return found[-1].read_text(errors="replace") if found else ""
        except OSError:
            return ""

    def rank_exit_code(self, pid: int) -> int:
        if self._codes is None:
            self._codes = exit_codes(self.log())
        return self._codes.get(pid, 0)

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> RankSet:
        """Launch, record every rank until the launcher ends; UsageError where the launch
        itself failed (port in use, rendezvous timed out)."""
        self.launch.check()
        with tempfile.TemporaryDirectory(prefix="vramtui-tp-") as folder:
            self._folder = folder
            spec_path = Path(folder) / "spec.json"
            spec_path.write_text(json.dumps(self.run_spec.spec.to_dict()))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(Path(folder) / "events.sock"))
            listener.listen(self.launch.nproc_per_node)
            env = dict(Launch.for_spec(self.run_spec.spec, self.extra_env).env)
            env.update({EVENTS_ENV: str(Path(folder) / "events.sock"), SPEC_ENV: str(spec_path)})
            if self.run_spec.alloc_conf:
                env["PYTORCH_CUDA_ALLOC_CONF"] = self.run_spec.alloc_conf
            self._t0 = time.monotonic()  # every rank's session starts at the launch
            self._launcher = Launcher(
                self.launch.command(sys.executable, str(Path(folder) / "logs")), env
            )
            if self._cancelled.is_set():
                self.terminate()
            waiter = threading.Thread(target=self._wait_launcher, daemon=True)
            waiter.start()
            self._accept(listener, on_event)
            listener.close()
            waiter.join()
            for thread in self._threads:
                thread.join()
        return self._result()

    def _wait_launcher(self) -> None:
        assert self._launcher is not None
        self._launcher.wait()
        self.launcher_ended.set()

    def _accept(self, listener: socket.socket, on_event: Callable[[ev.Event], None] | None) -> None:
        """Each rank as it connects, until all have or the launcher has ended."""
        while len(self.sessions) < self.launch.nproc_per_node and not self.launcher_ended.is_set():
            readable, _, _ = select.select([listener], [], [], 0.2)
            if readable:
                link, _ = listener.accept()
                self._record(link, on_event)

    def _record(self, link: socket.socket, on_event: Callable[[ev.Event], None] | None) -> None:
        lines = link.makefile("r", encoding="utf-8")
        try:
            hello = RankHello.decode(lines.readline())
        except (ValueError, KeyError, TypeError):
            lines.close()
            link.close()
            return
        session = self.lead if self.lead is not None and hello.local_rank == 0 else None
        session = session or Session(self.run_spec.spec, base_environment(), t0=self._t0)
        session.set_environment(
            tp_rank=hello.rank, tp_size=hello.world_size, node_rank=hello.node_rank
        )
        child = RankChild(hello, link, lines, self)
        recorder = Recorder(
            lambda: (child, "launched"),
            session,
            alloc_conf=self.run_spec.alloc_conf,
            use_nvml=self.use_nvml,
        )
        self.sessions[hello.rank] = session
        self.recorders[hello.rank] = recorder
        tell = on_event if hello.local_rank == 0 else None
        thread = threading.Thread(target=recorder.run, args=(tell,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _result(self) -> RankSet:
        if not self.sessions:
            failure = launch_failure(self.launch, self.log())
            if failure is not None:
                raise failure
            if self._cancelled.is_set():
                raise NoRanks("cancelled before any rank started", EXIT_INTERRUPTED)
            code = self._launcher.proc.returncode if self._launcher else None
            tail = last_lines(self.log(), 3).replace("\n", " | ")
            raise NoRanks(f"the launcher ended (code {code}) before any rank started: {tail}")
        return RankSet(self.launch, {r: s.snapshot() for r, s in sorted(self.sessions.items())})


class LeadRecorder(Recorder):
    """A tensor-parallel run as one Recorder, for a sweep (`vramtui bench --tp`): its
    session is this node's first rank's; the other ranks are recorded beside it."""

    def __init__(self, run: ResolvedRun, launch: TpLaunch, extra_env: dict[str, str] | None = None):
        super().__init__(self._no_child, Session(run.spec, base_environment()))
        self.ranks = RankRecorder(run, launch, extra_env, lead=self.session)
        self.rank_set: RankSet | None = None

    def _no_child(self) -> tuple[Any, str | None]:
        raise AssertionError("a tensor-parallel run starts its ranks through its launcher")

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        try:
            self.rank_set = self.ranks.run(on_event)
        except UsageError as exc:
            kind = "cancelled" if exc.exit_code == EXIT_INTERRUPTED else "usage"
            if exc.exit_code == EXIT_FAILED:
                kind = "crashed"
            self.session.fail(ev.Failed(kind, str(exc), "start"))
        return self.session

    def cancel(self, reason: str = "cancelled by the user") -> None:
        super().cancel(reason)
        self.ranks.cancel(reason)
