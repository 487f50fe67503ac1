"""Which devices a run can use, known without torch (NVML for GPUs).

CUDA numbers GPUs after CUDA_VISIBLE_DEVICES and its own order; NVML in PCI
order. Here `cuda:N` is checked against the count CUDA will see; the engine
reports its device's UUID and the parent matches NVML by UUID, never by index.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass

from vramtui import nvml
from vramtui.errors import UsageError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DeviceChoice:
    id: str  # cuda:0, mps, cpu
    label: str
    total: int | None = None
    free: int | None = None


def mps_possible() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def visible_cuda_count(nvml_count: int) -> int:
    """How many GPUs CUDA will number, given CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return nvml_count
    count = 0
    for item in visible.split(","):
        item = item.strip()
        if not item or item.startswith("-"):
            break  # CUDA stops at the first invalid entry
        count += 1
    return min(count, nvml_count) if visible.replace(",", "").strip().isdigit() else count


def cuda_choices() -> list[DeviceChoice]:
    """CUDA devices by CUDA index. Names and memory are NVML's where the order is
    known to agree (no CUDA_VISIBLE_DEVICES remapping); otherwise just the index."""
    gpus = nvml.gpus()
    count = visible_cuda_count(len(gpus))
    remapped = "CUDA_VISIBLE_DEVICES" in os.environ
    out = []
    for i in range(count):
        if not remapped and i < len(gpus):
            g = gpus[i]
            out.append(DeviceChoice(f"cuda:{i}", g.name, g.total, g.free))
        else:
            out.append(DeviceChoice(f"cuda:{i}", "CUDA GPU"))
    return out


def choices() -> list[DeviceChoice]:
    out = cuda_choices()
    if mps_possible():
        out.append(DeviceChoice("mps", "Apple MPS"))
    out.append(DeviceChoice("cpu", "CPU"))
    return out


def default_device() -> str:
    return choices()[0].id


def check_device(name: str) -> str:
    """Reject a device that cannot exist here, listing the ones that do."""
    name = name.strip().lower()
    if not _DEVICE.match(name):
        listed = ", ".join(c.id for c in choices())
        raise UsageError(f"unknown device {name!r}; devices here: {listed}")
    if name in ("auto", "cpu"):
        return name
    ids = [c.id for c in choices()]
    if name == "cuda":
        name = "cuda:0"
    if name.startswith("cuda") and not nvml.available():
        # Without NVML we cannot count GPUs; the engine checks with torch.
        return name
    if name not in ids:
        raise UsageError(f"no device {name!r} here; devices here: {', '.join(ids)}")
    return name
