"""What a profiled program's session records as its spec, and a saved spec read back.

A program chooses its own model, tokens and device, so its spec is not a RunSpec: it
names the program and its arguments. `saved_spec` reads either kind from a session's
JSON, old files included (fields a version no longer has are left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from vramtui.runspec.run_spec import RunSpec
from vramtui.runspec.train_spec import TrainSpec

PROGRAM_SOURCES = ("program", "track")  # `vramtui profile`, `vramtui.track()`


@dataclass(frozen=True)
class ProgramSpec:
    """A program `vramtui profile` ran (source "program") or a block `vramtui.track()`
    recorded inside one (source "track")."""

    model: str  # what the session is called: the script's file name or the module
    program: str  # the script's path, or "-m module"
    argv: tuple[str, ...] = ()  # its arguments
    source: str = "program"

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "source": self.source,
            "program": self.program,
            "argv": list(self.argv),
        }

    @property
    def label(self) -> str:
        return self.model

    @property
    def command(self) -> str:
        """The command line as it was given: the program and its arguments."""
        return " ".join([self.program, *self.argv])


SessionSpec = RunSpec | ProgramSpec | TrainSpec


def saved_spec(data: Mapping[str, object]) -> SessionSpec:
    """The spec a saved session recorded: a ProgramSpec for a program's, else a RunSpec
    of the fields this version knows (missing ones take their defaults)."""
    if "method" in data and isinstance(data.get("base"), Mapping):  # a training run's
        return saved_train_spec(data)
    if data.get("source") in PROGRAM_SOURCES:
        argv = data.get("argv")
        return ProgramSpec(
            model=str(data.get("model") or ""),
            program=str(data.get("program") or ""),
            argv=tuple(str(a) for a in argv) if isinstance(argv, (list, tuple)) else (),
            source=str(data["source"]),
        )
    known = {f.name for f in fields(RunSpec)}
    return RunSpec.from_dict({k: v for k, v in data.items() if k in known and v is not None})


def saved_train_spec(data: Mapping[str, object]) -> TrainSpec:
    """A training run's spec as saved, the fields this version knows."""
    known = {f.name for f in fields(TrainSpec)} - {"base"}
    values = {k: v for k, v in data.items() if k in known and v is not None}
    base = data["base"]
    assert isinstance(base, Mapping)
    return TrainSpec.from_dict({**values, "base": saved_spec(base).to_dict()})


def tokens_requested(spec: SessionSpec) -> int:
    """The tokens a run was asked for; 0 where none were (a program chooses its own)."""
    return spec.tokens if isinstance(spec, RunSpec) else 0
