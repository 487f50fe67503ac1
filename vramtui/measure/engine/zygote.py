"""The fork server's own process: imports once, then forks one engine per request.

Run as `python -m vramtui.measure.engine.zygote --socket-fd N --spawned-at T` by
forkserver.py. It does the engine's imports (engine_main.warm_imports: torch and
transformers, no CUDA call), then answers requests on its socket: each brings
the new engine's stdin, its log file and its events pipe (SCM_RIGHTS). The
forked engine runs engine_main.serve() as a spawned one would, from the moment its
imports are done, in a process session of its own; its CUDA context, allocator
and every figure are its own. The server reports each engine's pid as it forks
it and its exit status when it ends (the server is its parent). When its stdin
closes (the parent ended the sweep, or died) it exits; engines already forked
carry on until their own stdin closes.

The server starts no thread of its own; libraries may (OpenBLAS parks its threads
around a fork). It never initialises CUDA, which does not survive a fork, and runs
no model: what a run imports lazily it learns from a tiny run in a child of its own
(rehearsal.py), since torch's CPU thread pools, once run, hang a forked engine.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import traceback

from vramtui.measure.engine import engine_main


def reply(sock: socket.socket, message: dict[str, object]) -> None:
    sock.send(json.dumps(message).encode())  # SOCK_SEQPACKET: one message each


def wake_on_child_exit() -> tuple[int, int]:
    """A pipe (read end, write end) whose read end becomes readable when an engine
    ends (SIGCHLD), for select."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    return read_end, write_end


def _seconds(value: object) -> float | None:
    """A clock reading the server was handed (None where there was none)."""
    return float(value) if isinstance(value, (int, float)) else None


def fork_engine(
    sock: socket.socket, wake: tuple[int, int], request: dict[str, object], fds: list[int]
) -> int:
    """Fork one engine with `fds` (stdin, log, events) as its stdin, stdout/stderr and
    events pipe; returns its pid (in the child, never returns)."""
    stdin, log, events = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(log, 1)  # first: whatever fails below is in the engine's log
            os.dup2(log, 2)
            os.close(log)
            sock.close()
            os.setsid()
            # The server's wake pipe, by its two ends: from Python 3.12 asyncio (which
            # the imports bring in) resets the wakeup fd in a forked child itself, so
            # set_wakeup_fd(-1) answers -1 here, not the pipe's write end.
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake[0])
            os.close(wake[1])
            os.dup2(stdin, 0)
            os.close(stdin)
            spawned_at, started, imported = (
                _seconds(request[k]) for k in ("spawned_at", "started", "imported")
            )
            code = engine_main.serve(
                events, spawned_at, started or 0.0, imported
            )  # started: always
        except BaseException:  # noqa: BLE001 - the parent reads the log's tail
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


def reap(sock: socket.socket) -> None:
    """Tell the parent about every engine that has ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> int:
    started = engine_main.clock()
    parser = argparse.ArgumentParser(prog="vramtui-forkserver")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--spawned-at", type=float, default=None)
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.socket_fd)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    engine_main.warm_imports()
    times = {"spawned_at": args.spawned_at, "started": started, "imported": engine_main.clock()}
    wake = wake_on_child_exit()
    reply(sock, {"ready": times["imported"]})
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([sock, stdin, wake[0]], [], [])
        if wake[0] in readable:
            os.read(wake[0], 4096)
        reap(sock)
        if stdin in readable and not os.read(stdin, 4096):
            return 0  # the parent closed our stdin (or died)
        if sock in readable:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 3)
            if not message:
                return 0
            request = {**json.loads(message), **times}
            pid = fork_engine(sock, wake, request, fds)
            reply(sock, {"token": request["token"], "pid": pid})


if __name__ == "__main__":
    sys.stdout = sys.stderr
    os._exit(main())
