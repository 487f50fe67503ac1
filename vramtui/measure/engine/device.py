"""Inside the engine: the torch device a spec names, and what it is."""

from __future__ import annotations

from typing import Any

from vramtui.errors import UsageError
from vramtui.measure.device_inventory import cpu_name
from vramtui.runspec.cap import CAP_NEEDS_CUDA, cap_facts, memory_fraction


def resolve_device(name: str) -> Any:
    """The torch.device for 'auto', 'cpu', 'mps' or 'cuda[:N]', or a UsageError."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    available = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if cuda else []
    available += (["mps"] if mps else []) + ["cpu"]
    if name == "auto":
        return torch.device("cuda:0" if cuda else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        listed = ", ".join(available)
        raise UsageError(
            f"unknown device {name!r}; devices here: {listed}", field="device"
        ) from None
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda:0")
    if str(device) not in available and not (device.type == "mps" and "mps" in available):
        listed = ", ".join(available)
        raise UsageError(f"no device {name!r} here; devices here: {listed}", field="device")
    return device


def device_facts(device: Any) -> tuple[str, str | None, int | None]:
    """(name, UUID, total memory): the GPU's, or the CPU model and the system's RAM."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        uuid = getattr(props, "uuid", None)
        return props.name, str(uuid) if uuid is not None else None, int(props.total_memory)
    if device.type == "mps":
        return "Apple MPS", None, None
    import psutil

    return cpu_name(), None, int(psutil.virtual_memory().total)


def apply_cap(device: Any, cap_bytes: int | None) -> dict[str, str]:
    """--cap: hold torch's caching allocator on `device` to `cap_bytes`, before anything
    is allocated there. The facts for the Hello (none without a cap)."""
    if cap_bytes is None:
        return {}
    if device.type != "cuda":
        raise UsageError(f"{CAP_NEEDS_CUDA} (the run is on {device})", field="cap_bytes")
    import torch

    total = int(torch.cuda.get_device_properties(device).total_memory)
    fraction = memory_fraction(cap_bytes, total, device=str(device))
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return cap_facts(cap_bytes, fraction)
