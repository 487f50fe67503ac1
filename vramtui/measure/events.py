"""The engine's event stream: records, and their one-line JSON wire form.

The engine (child process) writes one JSON object a line to a pipe; the
parent parses them back into these records. Pure Python on both sides.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PHASES = ("start", "load", "prefill", "decode", "done")
# a training run's phases (vramtui.runspec.train_spec.TRAIN_PHASES) come between load and done


@dataclass(frozen=True)
class Hello:
    """First event: who the engine is and what it measures with."""

    pid: int
    device: str  # e.g. cuda:0, mps, cpu
    backend: str  # cuda | mps | cpu
    device_name: str
    device_uuid: str | None
    total_memory: int | None
    memory_source: str  # torch.cuda | torch.mps | process RSS (psutil)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ready:
    """The engine has done its imports and waits for a spec (no CUDA touched yet).
    Read by the parent's handle on the process, never by a session."""

    pid: int
    t: float


@dataclass(frozen=True)
class Startup:
    """When the engine process got where, before the run (monotonic clock, as every
    event's t): spawned by the parent, running Python, imports done, spec received."""

    spawned: float | None
    started: float
    imported: float
    spec_received: float
    cuda_initialized: bool  # whether torch had started CUDA before it saw the spec


@dataclass(frozen=True)
class Phase:
    name: str
    t: float


@dataclass(frozen=True)
class Sample:
    """One measurement inside the engine. token is None outside generation steps."""

    token: int | None
    t: float
    phase: str
    allocated: int | None
    reserved: int | None
    step_peak: int | None
    kv_bytes: int | None
    # a placed model: (device, allocated, reserved, step peak) for each device it uses
    devices: tuple[tuple[str, int | None, int | None, int | None], ...] | None = None


@dataclass
class WeightSplit:
    """What the loaded weights are made of, as stored: quantized weights packed (two
    4-bit weights a byte), their quantization state (absmax, SCB, scales, zero points,
    quant maps, double-quant constants), and what stays in full precision, by kind
    (embeddings, lm_head, norms, linear, other, buffers)."""

    params: int = 0  # parameters as the architecture counts them (unpacked)
    quantized_params: int = 0  # of which stored quantized
    packed_bytes: int = 0
    state_bytes: int = 0
    full_bytes: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # full_bytes by kind

    @property
    def total_bytes(self) -> int:
        return self.packed_bytes + self.state_bytes + self.full_bytes


@dataclass(frozen=True)
class Loaded:
    weights_bytes: int
    params: int
    dtype: str
    positions: int | None
    layers: int | None
    hidden: int | None
    kv_heads: int | None
    head_dim: int | None
    prompt_tokens: int
    load_s: float
    model_type: str = ""
    quant: str = "none"  # --quant, as runspec.quant.quant_label says it (nf4+dq, ...)
    split: WeightSplit | None = None  # None: not counted (an older stream)
    kv_storage: str = ""  # how a quantized KV cache is stored ("": in the dtype)


@dataclass(frozen=True)
class Placed:
    """A model placed across devices by a device map: what each device holds
    (vramtui.models.layer_placement.DevicePlacement.to_dict(), in device order)."""

    devices: list[dict[str, Any]]


@dataclass(frozen=True)
class Done:
    tokens: int
    load_s: float
    prefill_s: float
    decode_s: float
    generate_s: float
    tokens_per_s: float
    decode_tokens_per_s: float | None
    max_allocated: int | None = None  # the engine's own running max over the run
    # A compiled step (a static cache's decode): "first" where inductor compiled a graph
    # (its autotuner ran), "cached" where its on-disk cache held every graph; else None.
    compiled: str | None = None


@dataclass(frozen=True)
class TrainLoaded:
    """A training run's model ready to train (adapters added, checkpointing set): its
    parameters as they are held, counted tensor by tensor, each storage once."""

    frozen_bytes: int  # parameters and buffers that get no gradient (a LoRA's base)
    trainable_bytes: int  # parameters the optimizer updates
    frozen_params: int
    trainable_params: int
    optimizer: str  # the optimizer's class, e.g. torch.optim.AdamW
    grad_checkpointing: bool


@dataclass(frozen=True)
class TrainStep:
    """One optimizer step of a training run, told when it ends (steps count from 1).
    Each phase's peak is the highest allocated figure inside it (the probe's peak,
    reset as the phase starts); the bytes are counted from the tensors themselves."""

    step: int
    t_start: float
    t_end: float
    tokens: int  # trained on in this step: micro-batch x sequence x accumulation
    loss: float | None
    phase_peaks: dict[str, int | None]  # forward | backward | optimizer | zero_grad
    # counted in step 1 only (None after: every step runs the same graph on the same
    # shapes, and counting costs the step time): every .grad at the end of the last
    # backward; every optimizer state tensor after optimizer.step(); the bytes saved for
    # backward by the largest micro-batch's forward
    gradient_bytes: int | None
    optimizer_state_bytes: int | None
    activation_bytes: int | None
    forward_growth_bytes: int | None = None  # allocated at forward's end minus at its start
    # of optimizer_state_bytes, those in CUDA managed memory (bitsandbytes' paged
    # optimizers): outside torch's allocator, so in NVML's figure and not in allocated
    paged_state_bytes: int = 0


@dataclass(frozen=True)
class Failed:
    kind: str  # oom | usage | error | cancelled | crashed
    message: str
    phase: str
    token: int | None = None
    requested_bytes: int | None = None
    held_bytes: int | None = None
    field: str | None = None  # usage failures: the spec field it concerns


@dataclass(frozen=True)
class Generation:
    """One generate() call of a profiled program, told when it ends. Its steps are
    the session's tokens first_token .. first_token + steps - 1."""

    index: int
    first_token: int
    steps: int
    prompt_tokens: int
    batch: int
    num_beams: int
    tokens_generated: int
    peak_allocated_bytes: int | None
    t_start: float
    t_end: float
    model_class: str
    params: int
    status: str  # completed | failed


@dataclass(frozen=True)
class AllocationSnapshot:
    """`--snapshot`: the caching allocator's snapshot at the step that set the run's peak
    (or at its out-of-memory), saved as a pickle for PyTorch's memory_viz, and what held
    the bytes at that moment (vramtui.measure.allocator_snapshot.Moment, as plain data)."""

    path: str  # the pickle
    reason: str  # peak | oom | end (no trace to find the moment in)
    token: int | None  # the step it was taken in
    phase: str
    step_peak: int | None  # that step's peak, from the probe
    run_peak: int | None  # the highest step peak of the run until then
    allocated_bytes: int  # live at the moment
    by_kind: dict[str, int]  # weights | KV cache | transient | other -> bytes
    top: list[dict[str, Any]]  # the largest allocations: size, requested, kind, frame
    count: int
    trace_entries: int
    requested_bytes: int | None = None  # oom: the allocation that failed
    notes: list[str] = field(default_factory=list)


Event = (
    Ready
    | Startup
    | Hello
    | Phase
    | Sample
    | Loaded
    | Done
    | Failed
    | Generation
    | AllocationSnapshot
    | Placed
    | TrainLoaded
    | TrainStep
)

_TAGS: dict[str, type] = {
    "ready": Ready,
    "startup": Startup,
    "hello": Hello,
    "phase": Phase,
    "loaded": Loaded,
    "placed": Placed,
    "train_loaded": TrainLoaded,
    "train_step": TrainStep,
    "done": Done,
    "failed": Failed,
    "generation": Generation,
    "snapshot": AllocationSnapshot,
}
_TAG_OF = {cls: tag for tag, cls in _TAGS.items()}


def encode(event: Event) -> str:
    """One line of JSON. Samples are packed as a list: they are the hot path."""
    if isinstance(event, Sample):
        packed: list[object] = [
            "s",
            event.token,
            event.t,
            event.phase,
            event.allocated,
            event.reserved,
            event.step_peak,
            event.kv_bytes,
        ]
        if event.devices is not None:
            packed.append([list(d) for d in event.devices])
        return json.dumps(packed, separators=(",", ":"))
    payload: dict[str, Any] = asdict(event)
    payload["e"] = _TAG_OF[type(event)]
    return json.dumps(payload, separators=(",", ":"))


class WireError(ValueError):
    """A line from the engine that is not an event."""


def decode(line: str) -> Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise WireError(f"not an engine event: {line[:80]!r}") from exc
    if isinstance(data, list) and data and data[0] == "s" and len(data) in (8, 9):
        token, t, phase, allocated, reserved, step_peak, kv_bytes = data[1:8]
        devices = tuple((str(d[0]), d[1], d[2], d[3]) for d in data[8]) if len(data) == 9 else None
        return Sample(token, t, phase, allocated, reserved, step_peak, kv_bytes, devices)
    if isinstance(data, dict) and data.get("e") in _TAGS:
        cls = _TAGS[data.pop("e")]
        if cls is Loaded and isinstance(data.get("split"), dict):
            data["split"] = WeightSplit(**data["split"])
        try:
            event: Event = cls(**data)
        except TypeError as exc:
            raise WireError(f"malformed {cls.__name__} event: {exc}") from exc
        return event
    raise WireError(f"not an engine event: {line[:80]!r}")
