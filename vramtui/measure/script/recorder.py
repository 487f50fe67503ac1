"""Drive a profiled program: its process, the NVML poller, and the Session they feed.

The engine's `Recorder` does all of it (baseline, NVML matched on the hello's
UUID, RSS watch, cancel, how an unexplained exit is told); only what it starts
differs: a `ScriptProcess` for the user's program instead of an engine for a spec.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from vramtui.measure.recorder import Recorder, base_environment
from vramtui.measure.script.program_process import Program, ScriptProcess
from vramtui.measure.session import Session

ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"


@dataclass(frozen=True)
class _ProgramRun:
    """What the Recorder reads of a run it did not resolve: the allocator's settings."""

    alloc_conf: str | None


class ScriptRecorder(Recorder):
    def __init__(
        self,
        program: Program,
        *,
        session: Session | None = None,
        nvml_hz: float = 200.0,
        sample_hz: float = 20.0,
        capture: bool = False,
        on_output: Callable[[str], None] | None = None,
        use_nvml: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.program = program
        self.run_spec = _ProgramRun(os.environ.get(ALLOC_CONF) or None)  # type: ignore[assignment]
        self.spec = None  # type: ignore[assignment]
        self.session = session or Session(program.spec(), base_environment())
        self.nvml_hz = nvml_hz
        self.use_nvml = use_nvml
        self.engine = ScriptProcess(  # type: ignore[assignment]
            program,
            capture=capture,
            on_output=on_output,
            hz=sample_hz,
            extra_env=dict(extra_env or {}),
        )
        self._cancelled = threading.Event()
        self._cancel_reason = "cancelled by the user"
        self._poller = None
        self._watch = None
        self._rss = None
        self._baseline = {}

    def _start_engine(self) -> tuple[ScriptProcess, None]:  # type: ignore[override]
        """The program's own process, started here: never a spare engine."""
        self.engine.start()  # type: ignore[union-attr]
        return self.engine, None  # type: ignore[return-value]

    @property
    def exit_code(self) -> int | None:
        """The program's own exit code, once it has ended."""
        proc = self.engine.proc
        return proc.returncode if proc is not None else None
