"""The engine process: one run, from a RunSpec on stdin to events on a pipe.

Run as `python -m vramtui.measure.engine.child --events-fd N` with the RunSpec
as one JSON line on stdin. Events go out as JSON lines on fd N (see
vramtui.measure.events). stdin stays open: when it closes (the parent died)
the engine exits at once. Every failure becomes a Failed event and an exit
code, never a traceback on the parent's terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import traceback
from typing import Any

from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OOM, EXIT_USAGE, UsageError
from vramtui.measure import events as ev
from vramtui.measure.engine.runner import Engine, clock
from vramtui.spec import RunSpec


def _watch_parent() -> None:
    """Exit as soon as the parent's end of stdin closes (parent killed, SSH gone)."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_TRIED = re.compile(r"Tried to allocate ([0-9.]+) ([KMGT]i?B)")
_SCALE = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def requested_bytes(message: str) -> int | None:
    match = _TRIED.search(message)
    if not match:
        return None
    return int(float(match.group(1)) * _SCALE.get(match.group(2), 1))


def short_oom_message(text: str) -> str:
    """torch's OOM text runs to a paragraph; keep what was asked and what was free."""
    sentences = re.split(r"(?<=\.) ", text.strip().splitlines()[0] if text.strip() else text)
    return " ".join(sentences[:3]).strip()


def _held_bytes(engine: Engine) -> int | None:
    """Allocated now, and a last sample whose step peak is the high-water mark
    reached before the allocation that failed (nothing measured is lost)."""
    try:
        if engine.probe is None:
            return None
        allocated, reserved, peak = engine.probe.read()
        engine.emit(ev.Sample(None, clock(), engine.phase, allocated, reserved, peak, None))
        return allocated
    except Exception:
        return None


def _is_oom(exc: BaseException) -> bool:
    if "out of memory" in str(exc).lower():
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def run_engine(engine: Engine) -> int:
    """Run, turning every way a run can end into a Failed event and an exit code."""
    try:
        return engine.run()
    except UsageError as exc:
        engine.fail("usage", str(exc), field=exc.field)
        return EXIT_USAGE
    except KeyboardInterrupt:
        engine.fail("cancelled", "cancelled")
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, never a traceback
        text = str(exc).strip()
        if _is_oom(exc):
            engine.fail(
                "oom",
                short_oom_message(text),
                requested_bytes=requested_bytes(text),
                held_bytes=_held_bytes(engine),
            )
            return EXIT_OOM
        message = text.splitlines()[0] if text else type(exc).__name__
        engine.fail("error", f"{type(exc).__name__}: {message}")
        traceback.print_exc(file=sys.stderr)  # into the engine's log, not the terminal
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vramtui-engine")
    parser.add_argument("--events-fd", type=int, required=True)
    args = parser.parse_args(argv)
    out = os.fdopen(args.events_fd, "w", buffering=1)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    spec = RunSpec.from_dict(json.loads(sys.stdin.readline()))
    _watch_parent()
    code = run_engine(Engine(spec, out.write))
    try:
        out.flush()
    except OSError:
        pass
    return code


if __name__ == "__main__":
    sys.stdout = sys.stderr  # nothing in the engine may write to the parent's terminal
    os._exit(main())
