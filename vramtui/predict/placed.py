"""Every device of a placed run predicted: weights, KV cache, transients, context.

Pure Python. The placement is transformers' own (tracing/place.py, a child process,
cached on disk like the traces); what each device then holds during generation:
- weights: the modules the map gives it;
- KV cache: its layers' share; layers offloaded to the CPU run on the first GPU
  (accelerate's execution device), so their cache lives there;
- transients: logits and sampling on the device holding the lm_head (the run's
  transient above steady memory, estimate.py's); on the first GPU also the largest
  offloaded module, copied in for its forward;
- allocator slack in the run's proportion, and a CUDA context on every GPU used.
The CPU's figure is its offloaded weights plus the Python process.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.layer_placement import DevicePlacement, Placement
from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Architecture, Estimate
from vramtui.predict.tracing.traces import Trace, answer
from vramtui.runspec.device_map import MaxMemory

PLACE = "vramtui.predict.tracing.place"
GiB = 2**30


@dataclass(frozen=True)
class DeviceEstimate:
    device: str
    layers: tuple[int, ...]
    modules: tuple[str, ...]
    weights_bytes: int
    kv_cache_bytes: int
    transient_bytes: int
    slack_and_context_bytes: int  # allocator slack and CUDA context (CPU: the process)
    peak_allocated_bytes: int
    peak_total_bytes: int
    max_memory_bytes: int | None  # what --max-memory (or the device) gives it

    @property
    def fits(self) -> bool | None:
        if self.max_memory_bytes is None:
            return None
        return self.peak_total_bytes <= self.max_memory_bytes

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(layers=list(self.layers), modules=list(self.modules), fits=self.fits)
        return data


def place_model(
    config: dict[str, Any],
    dtype: str,
    device_map: str,
    max_memory: MaxMemory,
    only_cached: bool = False,
) -> Placement | None:
    """transformers' placement of the model for this map (None: `only_cached`, not
    computed yet). A UsageError says why it could not be placed."""
    request = {
        "config": config,
        "dtype": dtype,
        "device_map": device_map,
        "max_memory": {str(k): v for k, v in max_memory.items()},
    }
    reply = answer(request, only_cached, module=PLACE)
    if reply is None:
        return None
    if not reply.get("ok"):
        raise UsageError(f"cannot place the model: {reply.get('error')}", field="max_memory")
    devices = tuple(DevicePlacement.from_dict(d) for d in reply["devices"])
    return Placement(device_map=dict(reply["device_map"]), devices=devices)


def layer_kv_bytes(model: Architecture, est: Estimate) -> list[int]:
    """Each decoder layer's K and V at the end of the run."""
    positions = est.prompt_tokens + est.tokens - (1 if est.cache == "dynamic" else 0)
    if isinstance(model, Trace):
        return [2 * layer.row * layer.held(positions) for layer in model.layers]
    return [est.kv_cache_bytes // model.layers] * model.layers


def device_estimates(
    est: Estimate, placement: Placement, max_memory: MaxMemory | None
) -> list[DeviceEstimate]:
    """Each device's predicted peak for the run `est` describes, placed as `placement`."""
    kv = layer_kv_bytes(est.model, est)
    gpus = [d for d in placement.devices if d.device.startswith("cuda")]
    main = gpus[0].device if gpus else None
    offloaded = [d for d in placement.devices if not d.device.startswith("cuda")]
    # the allocator's slack a run needs (a ballooning cache's spare segments excluded:
    # they are given back before an OOM), in proportion to each device's tensors
    needed = est.required_bytes - est.context_bytes - est.peak_allocated_bytes
    slack = max(needed, 0) / est.peak_allocated_bytes if est.peak_allocated_bytes else 0.0
    out = []
    for d in placement.devices:
        given = _given(max_memory, d.device)
        if main is not None and not d.device.startswith("cuda"):  # offloaded weights
            total = d.weights_bytes + cpu_process().bytes
            out.append(_entry(d, 0, 0, total - d.weights_bytes, given))
            continue
        layers = list(d.layers) + ([i for o in offloaded for i in o.layers] if main else [])
        kv_bytes = sum(kv[i] for i in layers if i < len(kv))
        transient = est.transient_bytes if d.holds_head or main is None else 0
        if d.device == main:
            transient += max((o.largest_block_bytes for o in offloaded), default=0)
        allocated = d.weights_bytes + kv_bytes + transient
        context = est.context_bytes if d.device.startswith("cuda") else cpu_process().bytes
        out.append(_entry(d, kv_bytes, transient, math.ceil(allocated * slack) + context, given))
    return out


def _entry(
    d: DevicePlacement, kv: int, transient: int, above: int, given: int | None
) -> DeviceEstimate:
    """`above`: what the device holds beyond its tensors (slack and context; the
    process itself on the CPU)."""
    allocated = d.weights_bytes + kv + transient
    return DeviceEstimate(
        device=d.device,
        layers=d.layers,
        modules=d.modules,
        weights_bytes=d.weights_bytes,
        kv_cache_bytes=kv,
        transient_bytes=transient,
        slack_and_context_bytes=above,
        peak_allocated_bytes=allocated,
        peak_total_bytes=allocated + above,
        max_memory_bytes=given,
    )


def _given(max_memory: MaxMemory | None, device: str) -> int | None:
    if max_memory is None:
        return None
    key: int | str = int(device.split(":")[1]) if device.startswith("cuda:") else device
    return max_memory.get(key)


def runs_out_first(devices: list[DeviceEstimate]) -> DeviceEstimate | None:
    """The device that overflows its memory by the largest share, if any does."""
    over = [d for d in devices if d.fits is False and d.max_memory_bytes]
    return max(over, key=lambda d: d.peak_total_bytes / (d.max_memory_bytes or 1), default=None)


def room_for_generation(devices: list[DeviceEstimate], max_memory: MaxMemory) -> MaxMemory:
    """A max_memory that leaves each GPU room for its KV cache, transients, slack and
    context at this budget: what it has, less what generation adds above its weights."""
    out: MaxMemory = {}
    for key, size in max_memory.items():
        device = f"cuda:{key}" if isinstance(key, int) else key
        held = next((d for d in devices if d.device == device), None)
        if isinstance(key, int):
            extra = held.peak_total_bytes - held.weights_bytes if held else 0
            size = max(size - extra, 0)
        out[key] = size
    return out


def format_gib(max_memory: MaxMemory) -> str:
    """'0=70.51GiB,cpu=64GiB': each size rounded down to 1/100 GiB."""
    parts = []
    for key, size in max_memory.items():
        gib = math.floor(size / GiB * 100) / 100
        parts.append(f"{key}={gib:g}GiB")
    return ",".join(parts)


@dataclass(frozen=True)
class PlacedEstimate:
    """A placed run predicted: each device, the one that runs out first (if any), and a
    max_memory that leaves room for generation (None: the devices cannot hold it)."""

    placement: Placement
    devices: list[DeviceEstimate]
    max_memory: MaxMemory
    runs_out_first: DeviceEstimate | None
    room: MaxMemory | None

    def to_dict(self) -> dict[str, object]:
        first = self.runs_out_first
        return {
            "devices": [d.to_dict() for d in self.devices],
            "device_map": dict(self.placement.device_map),
            "max_memory": {str(k): v for k, v in self.max_memory.items()},
            "runs_out_first": first.device if first else None,
            "max_memory_for_generation": format_gib(self.room) if self.room else None,
        }


ROUNDS = 4  # re-placements while looking for a max_memory with room for generation


def estimate_placed(
    est: Estimate, config: dict[str, Any], device_map: str, max_memory: MaxMemory
) -> PlacedEstimate:
    """Place the run as transformers would, predict each device, and look for the
    max_memory that leaves room for generation (each round places the model again:
    giving a GPU less moves layers, and their cache, elsewhere)."""
    placement = _placed(config, est.dtype, device_map, max_memory)
    devices = device_estimates(est, placement, max_memory)
    room: MaxMemory | None = max_memory
    trial = devices
    for _ in range(ROUNDS):
        if all(d.fits is not False for d in trial):
            break
        assert room is not None  # None only on leaving the loop
        room = room_for_generation(trial, room)
        try:
            trial = device_estimates(est, _placed(config, est.dtype, device_map, room), max_memory)
        except UsageError:
            room = None  # what is left cannot hold the weights
            break
    else:
        room = None if any(d.fits is False for d in trial) else room
    return PlacedEstimate(placement, devices, max_memory, runs_out_first(devices), room)


def _placed(
    config: dict[str, Any], dtype: str, device_map: str, max_memory: MaxMemory
) -> Placement:
    placement = place_model(config, dtype, device_map, max_memory)
    assert placement is not None
    on_disk = [d for d in placement.devices if d.device == "disk"]
    if on_disk:
        raise UsageError(
            "--max-memory cannot hold the model: some modules would go to disk",
            field="max_memory",
        )
    return placement
