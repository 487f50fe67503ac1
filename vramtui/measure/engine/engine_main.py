"""The engine process: one run, from a RunSpec on stdin to events on a pipe.

Run as `python -m vramtui.measure.engine.engine_main --events-fd N [--spawned-at T]`.
It first does its imports (torch, transformers, the engine's modules: no CUDA),
says Ready on fd N, and only then reads the RunSpec, one JSON line on stdin. A
cold run writes the spec at once; a spare engine (see spare.py) gets it later,
when the user presses Run. Either way the process is the same program in the
same state when the spec arrives, so its figures are the same. Events go out as
JSON lines on fd N (see vramtui.measure.events). stdin stays open: when it
closes (the parent died) the engine exits at once, even mid-import. Every
failure becomes a Failed event and an exit code, never a traceback on the
parent's terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
from typing import IO, Any, Protocol

from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OOM, EXIT_USAGE, UsageError
from vramtui.measure import events as ev
from vramtui.measure.engine.engine_run import Engine, clock
from vramtui.models.hf import first_line
from vramtui.runspec import RunSpec
from vramtui.runspec.cap import format_cap


class SpecInbox:
    """Reads stdin in a thread: the first line is the spec; end of file at any time
    (the parent killed, SSH gone) ends the process at once."""

    def __init__(self) -> None:
        self._line: bytes | None = None
        self._arrived = threading.Event()
        threading.Thread(target=self._read, name="parent-watch", daemon=True).start()

    def _read(self) -> None:
        try:
            line = sys.stdin.buffer.readline()
            if line.strip():
                self._line = line
                self._arrived.set()
                while sys.stdin.buffer.read(4096):
                    pass
        except (OSError, ValueError):
            pass
        os._exit(EXIT_INTERRUPTED)

    def wait(self) -> bytes:
        self._arrived.wait()
        assert self._line is not None
        return self._line


def quiet_library_warnings() -> None:
    """Two libraries log at import, whatever the run: torchao (which transformers imports
    in every from_pretrained once it is installed) that a kernel library built for another
    GPU or Python did not load, and torch that torchao registers Enums the old way. Neither
    bears on memory; left on, they would fill every failure's quoted stderr. Raised to
    ERROR in the engine process only."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def warm_imports() -> None:
    """What every run needs, imported before the spec: no CUDA call is made here.
    First the engine's own imports, then whatever else a tiny run imports with the
    libraries installed (see rehearsal.py).

    A failure is left for the run itself to meet (the same import fails again there
    and becomes a Failed event the user sees)."""
    quiet_library_warnings()
    try:
        import psutil  # noqa: F401 - the CPU probe
        import torch  # noqa: F401
        import transformers.modeling_utils  # noqa: F401 - most of transformers' import time
        import transformers.models.opt.modeling_opt  # noqa: F401 - the catalogue's family
        from transformers import AutoConfig, AutoModelForCausalLM, LogitsProcessorList  # noqa: F401

        import vramtui.measure.engine.device  # noqa: F401
        import vramtui.measure.engine.model  # noqa: F401
        import vramtui.measure.engine.probes  # noqa: F401
        import vramtui.measure.engine.sampler  # noqa: F401
        import vramtui.measure.engine.snapshot  # noqa: F401 - every run makes its Snapshots
        from vramtui.measure.engine.rehearsal import import_what_a_run_imports

        import_what_a_run_imports()
    except Exception:  # noqa: BLE001 - reported by the run, see above
        traceback.print_exc(file=sys.stderr)


def cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_TRIED = re.compile(r"Tried to allocate ([0-9.]+) ([KMGT]i?B)")
_TRIED_CPU = re.compile(r"tried to allocate (\d+) bytes")  # torch's CPU allocator
_SCALE = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
# How running out of memory reads: CUDA, MPS, and torch's CPU allocator refused by the system
_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")
# The CPU allocator's prefix: "[enforce fail at alloc_cpu.cpp:127] err == 0. "
_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\][^.]*\.\s*")


def requested_bytes(message: str) -> int | None:
    match = _TRIED.search(message)
    if match:
        return int(float(match.group(1)) * _SCALE.get(match.group(2), 1))
    match = _TRIED_CPU.search(message)
    return int(match.group(1)) if match else None


def short_oom_message(text: str) -> str:
    """torch's OOM text runs to a paragraph; keep what was asked and what was free."""
    first = _ENFORCE.sub("", text.strip().splitlines()[0] if text.strip() else text)
    sentences = re.split(r"(?<=\.) ", first)
    return " ".join(sentences[:3]).strip()


def oom_message(text: str, cap_bytes: int | None) -> str:
    """The short OOM message; under --cap, said so: torch's own figures (the GPU's
    capacity, what is free) are the whole card's, not the cap's."""
    short = short_oom_message(text)
    if cap_bytes is None:
        return short
    return f"{short} [under --cap {format_cap(cap_bytes)}: the allocator may reserve no more]"


class Measuring(Protocol):
    """What reads the device and says so: the engine, or a profiled program's hooks."""

    probe: Any
    phase: str

    def emit(self, event: ev.Event) -> None: ...


def _held_bytes(engine: Measuring) -> int | None:
    """Allocated now, and a last sample whose step peak is the high-water mark
    reached before the allocation that failed (nothing measured is lost)."""
    try:
        if engine.probe is None:
            return None
        readings: tuple[int | None, int | None, int | None] = engine.probe.read()
        allocated, reserved, peak = readings
        engine.emit(ev.Sample(None, clock(), engine.phase, allocated, reserved, peak, None))
        return allocated
    except Exception:
        return None


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or any(t in str(exc).lower() for t in _OOM_TEXTS):
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
                oom_message(text, engine.spec.cap_bytes),
                requested_bytes=requested_bytes(text),
                held_bytes=_held_bytes(engine),
            )
            return EXIT_OOM
        engine.fail("error", f"{type(exc).__name__}: {first_line(exc)}")
        traceback.print_exc(file=sys.stderr)  # into the engine's log, not the terminal
        return EXIT_FAILED


def engine_for(data: dict[str, Any], write: Any) -> Engine:
    """The engine for a spec as it came on stdin: a training run's (a TrainSpec names
    its method) or a generation's."""
    if "method" in data:
        from vramtui.measure.engine.train_run import TrainEngine
        from vramtui.runspec.train_spec import TrainSpec

        return TrainEngine(TrainSpec.from_dict(data), write)
    return Engine(RunSpec.from_dict(data), write)


def main(argv: list[str] | None = None) -> int:
    started = clock()
    parser = argparse.ArgumentParser(prog="vramtui-engine")
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--spawned-at", type=float, default=None)
    args = parser.parse_args(argv)
    return serve(args.events_fd, args.spawned_at, started)


def serve(
    events_fd: int, spawned_at: float | None, started: float, imported: float | None = None
) -> int:
    """Import (unless `imported`: a fork server did, at that time), say Ready, wait
    for the spec, run it. The process's exit code."""
    out = os.fdopen(events_fd, "w", buffering=1)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        inbox = SpecInbox()
        if imported is None:
            warm_imports()
            imported = clock()
        out.write(ev.encode(ev.Ready(os.getpid(), imported)) + "\n")
        line = inbox.wait()
    except (KeyboardInterrupt, OSError):  # ended (or the parent gone) while a spare
        return EXIT_INTERRUPTED
    received = clock()
    engine = engine_for(json.loads(line), out.write)
    startup = ev.Startup(spawned_at, started, imported, received, cuda_initialized())
    engine.emit(startup)
    return run_and_flush(engine, out)


def run_and_flush(engine: Engine, out: IO[str]) -> int:
    """Run the engine (run_engine), then flush its events; the exit code."""
    code = run_engine(engine)
    try:
        out.flush()
    except OSError:
        pass
    return code


if __name__ == "__main__":
    sys.stdout = sys.stderr  # nothing in the engine may write to the parent's terminal
    os._exit(main())
