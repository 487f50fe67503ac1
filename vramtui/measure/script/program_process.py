"""The parent's handle on a profiled program's process. Imports neither torch nor transformers.

A `ChildProcess`, as an `EngineProcess` is: the `Recorder` that drives an engine
drives a program too.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path

import vramtui
from vramtui.errors import UsageError
from vramtui.measure.child_process import ChildHandle
from vramtui.runspec.program_spec import ProgramSpec

# The child's first line: find this vramtui (wherever the program's folder is), then
# hand over to the bootstrap, which installs the hooks and runs the program.
_ROOT = str(Path(vramtui.__file__).resolve().parent.parent)
BOOT = (
    f"import sys; sys.path.insert(1, {_ROOT!r}); "
    "from vramtui.measure.script.program_main import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass(frozen=True)
class Program:
    """What `vramtui profile` runs: a script (argv[0]) or a module, and its arguments."""

    argv: tuple[str, ...]  # the program's sys.argv: SCRIPT ARGS..., or ARGS... after -m
    module: str | None = None

    @property
    def name(self) -> str:
        return self.module or Path(self.argv[0]).name

    def spec(self) -> ProgramSpec:
        """What a session records as its spec: the program, not a RunSpec."""
        return ProgramSpec(
            model=self.name,
            program=("-m " + self.module) if self.module else self.argv[0],
            argv=self.argv[0 if self.module else 1 :],
        )


def program_from(argv: list[str], module: str | None = None) -> Program:
    """The program to run, checked: the script exists, or the module can be found."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if module:
        top = module.split(".")[0]
        # where `python -m` looks: the current folder first; the top package only,
        # so that nothing of the program runs here
        if PathFinder.find_spec(top, [os.getcwd(), *sys.path]) is None:
            raise UsageError(f"no module named {top!r}", field="path")
        return Program(tuple(argv), module=module)
    if not argv:
        raise UsageError(
            "profile needs a script (vramtui profile SCRIPT [ARGS...]) or -m MODULE", field="path"
        )
    script = Path(argv[0])
    if not (script.is_file() or (script / "__main__.py").is_file()):
        raise UsageError(f"no such script: {argv[0]}", field="path")
    return Program(tuple(argv))


def program_from_text(text: str) -> Program:
    """A command line as typed: `script.py ARGS...` or `-m module ARGS...`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the command line: {exc}", field="path") from None
    if words[:1] == ["-m"]:
        if len(words) < 2:
            raise UsageError("-m needs a module name", field="path")
        return program_from(words[2:], module=words[1])
    return program_from(words)


class ScriptProcess(ChildHandle):
    """Run a program under vramtui's hooks in a fresh process, and read its events.

    Headless, the program shares the terminal (stdin, stdout, stderr and the
    process group, so Ctrl+C reaches it as under `python`). With `capture`, its
    output goes line by line to `on_output` instead, and it runs in its own
    session with no stdin (the app owns the terminal). Ended by giving it a moment
    first (a Ctrl+C at the terminal reached it too), then SIGTERM (a
    KeyboardInterrupt inside), then SIGKILL.
    """

    stop_signals = (None, signal.SIGTERM, signal.SIGKILL)

    def __init__(
        self,
        program: Program,
        *,
        python: str = sys.executable,
        capture: bool = False,
        on_output: Callable[[str], None] | None = None,
        hz: float = 20.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.program = program
        self.python = python
        self.capture = capture
        self.on_output = on_output
        self.hz = hz
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._watch_w: int | None = None
        self._tail: list[str] = []

    def command(self, events_fd: int, watch_fd: int) -> list[str]:
        cmd = [self.python, "-c", BOOT, "--events-fd", str(events_fd), "--watch-fd", str(watch_fd)]
        cmd += ["--hz", str(self.hz)]
        if self.program.module:
            cmd += ["-m", self.program.module]
        return cmd + ["--", *self.program.argv]

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        watch_r, self._watch_w = os.pipe()
        env = dict(os.environ)
        env.update(self.extra_env)
        piped = subprocess.PIPE if self.capture else None
        try:
            self.proc = subprocess.Popen(
                self.command(write_fd, watch_r),
                stdin=subprocess.DEVNULL if self.capture else None,
                stdout=piped,
                stderr=subprocess.STDOUT if self.capture else None,
                pass_fds=(write_fd, watch_r),
                start_new_session=self.capture,
                env=env,
            )
        finally:
            os.close(write_fd)
            os.close(watch_r)
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8")
        if self.capture:
            threading.Thread(target=self._pump, name="vramtui-program-output", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail = (self._tail + [line])[-20:]
            if self.on_output is not None:
                self.on_output(line)

    def _close(self) -> None:
        if self._watch_w is not None:
            os.close(self._watch_w)
            self._watch_w = None
        super()._close()

    def stderr_tail(self, lines: int = 20) -> str:
        """The program's last lines (captured output only: headless it went to the terminal)."""
        return "\n".join(self._tail[-lines:])
