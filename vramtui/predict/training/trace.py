"""Training-step traces (step_tracer.py, in a child process), asked for once and kept
on disk beside the generation traces. Pure Python: this side starts the child, reads
its JSON and caches it (the key holds the config, the recipe, the shape and the
versions of torch, transformers and peft)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

from vramtui.models.hf import short_reason
from vramtui.predict.tracing.traces import TraceError, answer
from vramtui.predict.training.optimizer_states import Param
from vramtui.runspec.train_spec import TrainSpec

MODULE = "vramtui.predict.training.step_tracer"
TRAIN_TRACE_VERSION = 2


@dataclass(frozen=True)
class Mark:
    step: int
    phase: str  # forward | backward | optimizer | zero_grad | end
    event: int  # index of the phase's first event


@dataclass(frozen=True)
class TrainTrace:
    """Two training steps of one model and recipe: its parameters, and every
    allocation (a positive size) and free (-(i + 1): allocation i) they made."""

    model_class: str
    params: tuple[Param, ...]
    buffers: tuple[int, ...]
    events: tuple[int, ...]
    marks: tuple[Mark, ...]
    optimizer_traced: bool


@dataclass(frozen=True)
class TrainShape:
    """What a training trace depends on besides the model's config."""

    method: str = "full"
    batch: int = 1
    seq: int = 512
    dtype: str = "bfloat16"
    attn: str = "sdpa"
    backend: str = "cuda"
    grad_checkpointing: bool = False
    optim: str = "adamw"
    grad_accum: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: str = "all-linear"

    @classmethod
    def of(cls, spec: TrainSpec, backend: str) -> TrainShape:
        """The shape a training run of `spec` has on `backend`."""
        return cls(
            method=spec.method, batch=spec.base.batch, seq=spec.seq,
            dtype=spec.base.dtype or ("bfloat16" if backend == "cuda" else "float32"),
            attn=spec.base.attn, backend=backend, grad_checkpointing=spec.grad_checkpointing,
            optim=spec.optim, grad_accum=spec.grad_accum, lora_r=spec.lora_r,
            lora_alpha=spec.lora_alpha, lora_targets=spec.lora_targets,
        )  # fmt: skip


def _peft_version() -> str:
    try:
        return metadata.version("peft")
    except metadata.PackageNotFoundError:
        return "?"


def parse(data: dict[str, Any]) -> TrainTrace:
    params = tuple(
        Param(p["name"], tuple(p["shape"]), p["dtype"], p["trainable"], p["four_bit"])
        for p in data["params"]
    )
    return TrainTrace(
        model_class=data["model_class"],
        params=params,
        buffers=tuple(data["buffers"]),
        events=tuple(data["events"]),
        marks=tuple(Mark(*mark) for mark in data["marks"]),
        optimizer_traced=data["optimizer_traced"],
    )


@lru_cache(maxsize=16)
def _cached(name: str, request_json: str, only_cached: bool = False) -> TrainTrace | None:
    request = json.loads(request_json)
    reply = answer({**request, "peft": _peft_version()}, only_cached, module=MODULE)
    if reply is None:
        return None
    if not reply.get("ok"):
        reason = short_reason(str(reply.get("error")))
        raise TraceError(f"cannot trace a training step of {name}: {reason}", field="model")
    return parse(reply)


def _request_json(config: dict[str, Any], shape: TrainShape) -> str:
    from dataclasses import asdict

    request = {"config": config, **asdict(shape), "version": TRAIN_TRACE_VERSION}
    return json.dumps(request, sort_keys=True, default=str)


def train_trace(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace:
    """The trace of two steps of `shape`'s recipe on `config` (TraceError: the model's
    code cannot run on meta)."""
    traced = _cached(name, _request_json(config, shape))
    assert traced is not None
    return traced


def cached_train_trace(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace | None:
    """The trace as `train_trace` answers it where it is cached on disk, else None (no
    child process started)."""
    return _cached(name, _request_json(config, shape), True)


def live_bytes(events: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """(bytes alive after the events, the most alive at once): storages' own sizes, no
    allocator."""
    sizes: list[int] = []
    live = peak = 0
    for value in events:
        if value > 0:
            sizes.append(value)
            live += value
            peak = max(peak, live)
        else:
            live -= sizes[-value - 1]
    return live, peak


def live_peak(events: tuple[int, ...] | list[int]) -> int:
    return live_bytes(events)[1]
