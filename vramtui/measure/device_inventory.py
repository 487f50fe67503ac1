"""The devices here, asked of NVML (GPUs) and the platform (MPS, the CPU and its RAM).

The app process never touches CUDA: GPUs are counted and named through NVML.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

import psutil

from vramtui.measure import nvml
from vramtui.runspec.device_choice import DeviceChoice, DeviceList


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


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo, else the platform's word for it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    name = platform.processor()
    if platform.system() == "Darwin":
        try:
            import subprocess

            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
            )
            name = out.stdout.strip() or name
        except (OSError, subprocess.SubprocessError):
            pass
    return name or platform.machine() or "CPU"


def cpu_choice() -> DeviceChoice:
    memory = psutil.virtual_memory()
    return DeviceChoice("cpu", cpu_name(), int(memory.total), int(memory.available))


def available() -> DeviceList:
    """Every device a run could use here: GPUs (NVML), MPS on Apple silicon, the CPU."""
    out = cuda_choices()
    if mps_possible():
        out.append(DeviceChoice("mps", "Apple MPS"))
    out.append(cpu_choice())
    # Without NVML the GPUs cannot be counted, unless NVML said there is no driver at all.
    return DeviceList(tuple(out), gpus_counted=nvml.available() or nvml.no_driver())
