"""Where a device map puts a model: transformers' own placement, and what each device holds.

The placement is computed by the function `from_pretrained` itself calls
(`transformers.integrations.accelerate._get_device_map`: accelerate's
get_balanced_memory and infer_auto_device_map on the model built on the meta
device), so the engine's random-weight build, a checkpoint load and the estimate
all place a model alike. torch and transformers are imported inside the
functions: importing this module costs nothing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_LAYER = re.compile(r"\.(?:layers|h|blocks|block)\.(\d+)$")


@dataclass(frozen=True)
class DevicePlacement:
    """What one device holds after placement."""

    device: str  # cuda:N or cpu
    weights_bytes: int  # parameters and persistent buffers, a tied tensor once
    layers: tuple[int, ...] = ()  # decoder layers (by index)
    modules: tuple[str, ...] = ()  # the other modules placed here (embeddings, head, norm)
    holds_head: bool = False  # the lm_head: logits and sampling run here
    largest_block_bytes: int = 0  # the largest module placed whole here (a layer, mostly)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"], data["modules"] = list(self.layers), list(self.modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevicePlacement:
        return cls(
            device=str(data["device"]),
            weights_bytes=int(data["weights_bytes"]),
            layers=tuple(int(i) for i in data.get("layers", ())),
            modules=tuple(str(m) for m in data.get("modules", ())),
            holds_head=bool(data.get("holds_head", False)),
            largest_block_bytes=int(data.get("largest_block_bytes", 0)),
        )


@dataclass(frozen=True)
class Placement:
    """A model placed: the module-level map and each device's share, in device order."""

    device_map: dict[str, str] = field(default_factory=dict)  # module -> cuda:N | cpu | disk
    devices: tuple[DevicePlacement, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"device_map": dict(self.device_map), "devices": [d.to_dict() for d in self.devices]}


def device_name(value: Any) -> str:
    """accelerate's 0 / 'cpu' / 'disk' / torch.device as cuda:0, cpu, disk."""
    if isinstance(value, int):
        return f"cuda:{value}"
    text = str(value)
    return "cuda:0" if text == "cuda" else text


def infer_device_map(model: Any, device_map: str, max_memory: dict | None) -> dict[str, str]:
    """The module-level map from_pretrained computes for `device_map` (a strategy name)."""
    import logging

    from transformers.integrations.accelerate import _get_device_map

    # accelerate warns of each GPU named that this process cannot see: the estimate asks
    # about GPUs as given, and the engine's were checked before it started
    log = logging.getLogger("accelerate.utils.modeling")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        placed = _get_device_map(model, device_map, dict(max_memory) if max_memory else None, None)
    finally:
        log.setLevel(level)
    return {name: device_name(dev) for name, dev in placed.items()}


def entry_of(name: str, device_map: dict[str, str]) -> str:
    """The map's entry for a tensor or module: its longest prefix in the map."""
    parts = name.split(".")
    for n in range(len(parts), -1, -1):
        prefix = ".".join(parts[:n])
        if prefix in device_map:
            return prefix
    raise KeyError(f"{name} is not in the device map")


def device_of(name: str, device_map: dict[str, str]) -> str:
    """The device of a tensor or module."""
    return device_map[entry_of(name, device_map)]


def _order(device: str) -> tuple[int, int]:
    if device.startswith("cuda:"):
        return (0, int(device.split(":")[1]))
    return (1, 0 if device == "cpu" else 1)


def summarize(model: Any, device_map: dict[str, str]) -> Placement:
    """Each device's weights (every parameter and buffer once, tied ones once), layers
    and modules."""
    entries: dict[str, int] = {}  # bytes of each entry of the map
    seen: set[int] = set()
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        entry = entry_of(name, device_map)
        entries[entry] = entries.get(entry, 0) + tensor.numel() * tensor.element_size()
    sizes: dict[str, int] = {}
    largest: dict[str, int] = {}
    for entry, size in entries.items():
        dev = device_map[entry]
        sizes[dev] = sizes.get(dev, 0) + size
        largest[dev] = max(largest.get(dev, 0), size)
    layers: dict[str, list[int]] = {}
    modules: dict[str, list[str]] = {}
    all_layers = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    for name, dev in device_map.items():
        match = _LAYER.search(name)
        if name == "":  # the whole model on one device
            layers.setdefault(dev, []).extend(range(all_layers))
            modules.setdefault(dev, []).append("(all)")
        elif match:
            layers.setdefault(dev, []).append(int(match.group(1)))
        else:
            modules.setdefault(dev, []).append(name or "(all)")
    head = _head_device(model, device_map)
    devices = tuple(
        DevicePlacement(
            device=dev,
            weights_bytes=sizes.get(dev, 0),
            layers=tuple(sorted(layers.get(dev, []))),
            modules=tuple(modules.get(dev, [])),
            holds_head=dev == head,
            largest_block_bytes=largest.get(dev, 0),
        )
        for dev in sorted(set(device_map.values()), key=_order)
    )
    return Placement(device_map=dict(device_map), devices=devices)


def _head_device(model: Any, device_map: dict[str, str]) -> str | None:
    """Where the output embedding (lm_head) runs."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    for name, module in model.named_modules():
        if module is head:
            return device_of(name, device_map)
    return None


def place(model: Any, device_map: str, max_memory: dict | None) -> Placement:
    """Place a meta model as from_pretrained would, and say what each device holds."""
    return summarize(model, infer_device_map(model, device_map, max_memory))
