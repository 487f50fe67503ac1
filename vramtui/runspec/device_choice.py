"""Device names a run can ask for, and the devices there are, as plain records.

Pure: the list of devices is made elsewhere (vramtui.measure.device_inventory asks NVML
and the platform) and handed in, so a laptop can reason about a GPU box.
CUDA numbers GPUs after CUDA_VISIBLE_DEVICES and its own order, NVML in PCI
order: `cuda:N` here is CUDA's number; the engine reports its device's UUID and
the parent matches NVML by UUID, never by index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vramtui.errors import UsageError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class DeviceChoice:
    id: str  # cuda:0, mps, cpu
    label: str  # the GPU's or CPU's name
    total: int | None = None  # bytes: device memory, or system RAM for the CPU
    free: int | None = None  # bytes free now (CPU: available RAM)

    @property
    def backend(self) -> str:
        return backend_of(self.id)


@dataclass(frozen=True)
class DeviceList:
    """The devices there are. `gpus_counted`: NVML answered, so the CUDA list is
    complete; otherwise a `cuda:N` cannot be checked before the engine starts."""

    choices: tuple[DeviceChoice, ...]
    gpus_counted: bool = True

    def ids(self) -> list[str]:
        return [c.id for c in self.choices]

    def find(self, device_id: str) -> DeviceChoice | None:
        return next((c for c in self.choices if c.id == device_id), None)

    def best(self) -> str:
        """What `auto` runs on: the first GPU, else MPS, else the CPU."""
        ids = self.ids()
        return next((i for i in ids if i.startswith("cuda")), "mps" if "mps" in ids else "cpu")


def backend_of(device_id: str) -> str:
    """cuda, mps or cpu for a concrete device id."""
    if device_id.startswith("cuda"):
        return "cuda"
    return "mps" if device_id == "mps" else "cpu"


def check_device(name: str, devices: DeviceList) -> str:
    """The canonical id of a device asked for (auto stays auto), or a UsageError that
    lists the devices there are."""
    wanted = name.strip().lower()
    listed = ", ".join(devices.ids())
    if not _DEVICE.match(wanted):
        raise UsageError(f"unknown device {name!r}; devices here: {listed}", field="device")
    if wanted == "cuda":
        wanted = "cuda:0"
    if wanted in ("auto", "cpu") or wanted in devices.ids():
        return wanted
    if wanted.startswith("cuda") and not devices.gpus_counted:
        return wanted  # without NVML the GPUs cannot be counted; the engine checks
    raise UsageError(f"no device {name!r} here; devices here: {listed}", field="device")
