"""The device list of the start screen: every GPU NVML sees (name, free/total), MPS, CPU."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vramtui.runspec import DeviceChoice, DeviceList
from vramtui.units import format_bytes

AUTO_LABEL = "auto (first GPU, else MPS, else CPU)"


@dataclass(frozen=True)
class DeviceOption:
    id: str
    label: str


def describe(choice: DeviceChoice) -> str:
    """cuda:0  H100 80GB HBM3 · 79.1 GB free (the CPU: the RAM available), short enough
    for the form at 80 columns."""
    text = f"{choice.id}  {choice.label.removeprefix('NVIDIA ')}"
    if choice.free is not None:
        free = "available" if choice.backend == "cpu" else "free"
        text += f" · {format_bytes(choice.free)} {free}"
    return text


def initial_device_options(wanted: str) -> list[DeviceOption]:
    """What the form shows before NVML has answered."""
    out = [DeviceOption("auto", AUTO_LABEL)]
    if wanted not in ("auto", "cpu"):
        out.append(DeviceOption(wanted, wanted))
    out.append(DeviceOption("cpu", "cpu  CPU"))
    return out


def device_options(choices: Iterable[DeviceChoice], wanted: str) -> list[DeviceOption]:
    """auto, then each device found; a device asked for on the command line that was
    not found stays in the list (the run will say why it cannot use it)."""
    out = [DeviceOption("auto", AUTO_LABEL)]
    out += [DeviceOption(c.id, describe(c)) for c in choices]
    if wanted not in {o.id for o in out}:
        out.insert(1, DeviceOption(wanted, f"{wanted}  (not found here)"))
    return out


def unknown_devices(wanted: str) -> DeviceList:
    """Before NVML has answered: the CPU, and a GPU asked for taken on trust."""
    choices = [DeviceChoice("cpu", "CPU")]
    if wanted.startswith("cuda"):
        choices.insert(0, DeviceChoice(wanted, wanted))
    return DeviceList(tuple(choices), gpus_counted=False)
