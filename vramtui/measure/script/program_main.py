"""The profiled program's process: vramtui's hooks first, then the program, unchanged.

Started by `ScriptProcess` as `python -c BOOT --events-fd N --watch-fd M --
(SCRIPT | -m MODULE) [ARGS...]`. The program gets its own argv, the terminal's
stdin, stdout and stderr, and `__main__`, as under `python SCRIPT`; events go
out as JSON lines on fd N (closed to the program's own children). When the
parent's end of fd M closes (the parent died) the process exits at once.

The program's exit code is this process's. A program that raises has its
traceback printed as Python prints it (vramtui's frames left out), and the
session ends failed; an out-of-memory is reported with its phase, token and
bytes. Ctrl+C (or SIGTERM from the parent) ends the session cancelled, 130.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED
from vramtui.measure.engine.engine_main import (
    _held_bytes,
    _is_oom,
    requested_bytes,
    short_oom_message,
)
from vramtui.measure.script.hooks import Instrument

# Frames that are vramtui's or runpy's, not the program's: left out of its traceback.
_OURS = (str(Path(__file__).parent), str(Path(runpy.__file__)), "<frozen runpy>")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vramtui-profile-child")
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--watch-fd", type=int)
    parser.add_argument("--hz", type=float, default=20.0)
    parser.add_argument("-m", dest="module")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.argv and args.argv[0] == "--":
        args.argv = args.argv[1:]
    return args


def _watch_parent(fd: int) -> None:
    def watch() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        os._exit(EXIT_INTERRUPTED)

    os.set_inheritable(fd, False)
    threading.Thread(target=watch, name="vramtui-parent-watch", daemon=True).start()


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _program_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback with vramtui's and runpy's frames taken out."""
    kept: list[TracebackType] = []
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not (name.startswith(_OURS) or (name == "<string>" and not kept)):
            kept.append(tb)  # (a leading <string> is the `python -c` that started us)
        tb = tb.tb_next
    for this, after in zip(kept, kept[1:] + [None], strict=True):
        this.tb_next = after
    return kept[0] if kept else None


def print_program_traceback(exc: BaseException) -> None:
    seen: set[int] = set()
    chained: BaseException | None = exc
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        chained.__traceback__ = _program_frames(chained.__traceback__)
        chained = chained.__cause__ or chained.__context__
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.flush()


def exit_code_of(exc: SystemExit) -> int:
    """As Python: None is 0, an int is itself, anything else is printed and is 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_program(module: str | None, argv: list[str]) -> None:
    if module:
        sys.argv = [module, *argv]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    script = argv[0]
    sys.argv = list(argv)
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(os.path.abspath(script), run_name="__main__")  # __file__ absolute, as Python


def report(instrument: Instrument, exc: BaseException) -> int:
    """Print the program's traceback and record how it failed; the exit code."""
    print_program_traceback(exc)
    return record_failure(instrument, exc)


def record_failure(instrument: Instrument, exc: BaseException) -> int:
    """Record how the program failed (an OOM with its phase, token and bytes); the exit code."""
    where = instrument.where_raised(exc)
    if where is not None:  # raised inside a load or generate(): where it was
        instrument.phase, instrument.token = where
    if isinstance(exc, KeyboardInterrupt):
        instrument.fail("cancelled", "interrupted")
        return EXIT_INTERRUPTED
    text = str(exc).strip()
    if _is_oom(exc):
        phase, token = instrument.phase, instrument.token
        held = _held_bytes(instrument)
        instrument.phase, instrument.token = phase, token
        instrument.fail(
            "oom", short_oom_message(text), requested_bytes=requested_bytes(text), held_bytes=held
        )
        return EXIT_FAILED
    message = text.splitlines()[0] if text else ""
    instrument.fail("error", f"{type(exc).__name__}: {message}".rstrip(": "))
    return EXIT_FAILED


def profile(instrument: Instrument, module: str | None, argv: list[str]) -> int:
    """Run the program under the instrument; every way it ends is an event."""
    instrument.install()
    instrument.start()
    try:
        run_program(module, argv)
        code = 0
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:  # noqa: BLE001 - the program's own failure, reported
        code = report(instrument, exc)
        instrument.stop()
        return code
    instrument.training.finish()  # the last training step, if the program trained
    instrument.stop()
    if code == 0:
        instrument.enter("done")
        instrument.emit(instrument.done_event())
    else:
        instrument.fail("error", f"the program exited with code {code}")
    return code


def main(argv: list[str]) -> int:
    args = parse(argv)
    os.set_inheritable(args.events_fd, False)
    out = os.fdopen(args.events_fd, "w", buffering=1)
    if args.watch_fd is not None:
        _watch_parent(args.watch_fd)
    signal.signal(signal.SIGTERM, _on_term)
    code = profile(Instrument(out.write, hz=args.hz), args.module, args.argv)
    try:
        out.flush()
    except OSError:
        pass
    return code
