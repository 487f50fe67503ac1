"""Where a run ran: the Environment a session records beside its spec.

Written as the run goes (the recorder's facts, then the engine's Hello) and saved in the
session's JSON as a flat object, the form every version has written: `to_dict` leaves out
what was never recorded, and `from_dict` reads any version's, keeping names this one does
not know (a newer engine's versions) in `other`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Environment:
    """Where a run ran and with what. Every field is None until recorded."""

    # this process
    vramtui: str | None = None
    platform: str | None = None
    hostname: str | None = None
    driver: str | None = None  # the NVIDIA driver's version, where NVML answers
    command: str | None = None  # the command line that made the session, as run
    vramtui_commit: str | None = None  # the git commit, where vramtui runs from a checkout
    vramtui_dirty: bool | None = None  # whether that checkout's tracked files had changed
    # the engine (or profiled program): its Hello
    engine_pid: int | None = None
    device: str | None = None  # e.g. cuda:0, cpu
    backend: str | None = None  # cuda | cpu | mps
    device_name: str | None = None
    device_total_bytes: int | None = None
    memory_source: str | None = None  # what the allocator series measure
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    cuda_runtime: str | None = None
    sdpa_cudnn: str | None = None  # CUDA: whether sdpa could use cuDNN attention
    # how the engine started and the allocator's settings
    engine_start: str | None = None  # measure.startup: cold | warm spare | forked ...
    cuda_alloc_conf: str | None = None  # PYTORCH_CUDA_ALLOC_CONF
    # NVML's view of the GPU
    nvml_index: int | None = None
    gpu_name: str | None = None
    nvml_process_source: str | None = None  # how the process's own figure was read
    # a model placed across devices
    placed_gpus: dict[str, dict[str, Any]] | None = None  # device -> its GPU's facts
    memory_limit_bytes: int | None = None  # what the CPU's RSS may grow to
    placed_device: bool = False  # a view of one device of several (device_view.on_device)
    tp_rank: int | None = None  # tensor parallel: this session's rank, of tp_size
    tp_size: int | None = None
    node_rank: int | None = None  # the node (launcher agent) that recorded the rank
    # names this version does not know (a newer engine's versions): kept as they came
    other: Mapping[str, object] = field(default_factory=dict)

    def updated(self, **values: object) -> Environment:
        """This environment with `values` recorded; an unknown name is a TypeError."""
        unknown = sorted(set(values) - _NAMES)
        if unknown:
            raise TypeError(f"not an environment field: {', '.join(unknown)}")
        changes: dict[str, Any] = dict(values)
        return replace(self, **changes)

    def with_versions(self, versions: Mapping[str, str]) -> Environment:
        """The engine's versions recorded: those it names as fields, the rest in `other`."""
        known: dict[str, Any] = {k: v for k, v in versions.items() if k in _NAMES}
        rest = {k: v for k, v in versions.items() if k not in _NAMES}
        return replace(self, **known, other={**self.other, **rest})

    def to_dict(self) -> dict[str, object]:
        """The flat JSON object a session saves: what was recorded, nothing else."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "other" or value is None or (f.name == "placed_device" and not value):
                continue
            out[f.name] = value
        out.update(self.other)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Environment:
        """A saved environment, of any version."""
        known: dict[str, Any] = {k: v for k, v in data.items() if k in _NAMES}
        rest = {k: v for k, v in data.items() if k not in _NAMES and k != "other"}
        return cls(**known, other=rest)


_NAMES = {f.name for f in fields(Environment)} - {"other"}
