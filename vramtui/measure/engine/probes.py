"""Memory probes inside the engine: one per backend, cheap enough for every token.

Each probe answers (allocated, reserved, peak since the last reset) in bytes;
None where the backend has no such figure.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

from vramtui.errors import UsageError


class Probe(Protocol):
    source: str

    def read(self) -> tuple[int | None, int | None, int | None]: ...

    def reset_peak(self) -> None: ...


class CudaProbe:
    """torch's caching allocator. One raw stats call (not three) per sample:
    `memory_allocated()` and friends each rebuild the whole flattened stats
    dict, which costs tens of microseconds a call."""

    source = "torch.cuda"

    def __init__(self, index: int) -> None:
        self.index = index
        self._raw = getattr(torch._C, "_cuda_memoryStats", None)
        self._reset = getattr(torch._C, "_cuda_resetPeakMemoryStats", None)
        try:
            self.read()
        except Exception:  # a torch without the raw call, or another layout
            self._raw = None

    def read(self) -> tuple[int | None, int | None, int | None]:
        if self._raw is not None:
            stats = self._raw(self.index)
            allocated = stats["allocated_bytes"]["all"]
            return (
                allocated["current"],
                stats["reserved_bytes"]["all"]["current"],
                allocated["peak"],
            )
        stats = torch.cuda.memory_stats(self.index)
        return (
            stats.get("allocated_bytes.all.current", 0),
            stats.get("reserved_bytes.all.current", 0),
            stats.get("allocated_bytes.all.peak", 0),
        )

    def reset_peak(self) -> None:
        if self._reset is not None:
            self._reset(self.index)
        else:
            torch.cuda.reset_peak_memory_stats(self.index)

    def max_allocated(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.index))


class MpsProbe:
    """Apple's MPS: tensors allocated, and what the Metal driver holds; no peak."""

    source = "torch.mps"

    def read(self) -> tuple[int | None, int | None, int | None]:
        return torch.mps.current_allocated_memory(), torch.mps.driver_allocated_memory(), None

    def reset_peak(self) -> None:
        return None


class CpuProbe:
    """The process's resident memory (RSS). On Linux the peak since the last
    reset is the kernel's high-water mark (VmHWM), reset through clear_refs."""

    source = "process RSS (psutil)"

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process(os.getpid())
        self._hwm = os.path.exists("/proc/self/status") and self._can_reset()

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def _vm_hwm(self) -> int | None:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None

    def read(self) -> tuple[int | None, int | None, int | None]:
        rss = int(self._process.memory_info().rss)
        peak = self._vm_hwm() if self._hwm else None
        return rss, None, max(peak, rss) if peak is not None else None

    def reset_peak(self) -> None:
        if self._hwm:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")


def make_probe(backend: str, index: int = 0) -> Probe:
    if backend == "cuda":
        return CudaProbe(index)
    if backend == "mps":
        return MpsProbe()
    return CpuProbe()


class DeviceProbes:
    """Every device a placed model may use, read at each step: each GPU's allocator
    (peak reset per device) and, where weights are offloaded, the process's RSS."""

    def __init__(self, devices: list[str]) -> None:
        self.probes: dict[str, Probe] = {
            d: make_probe("cuda", int(d.split(":")[1])) if d.startswith("cuda:") else CpuProbe()
            for d in devices
        }

    def keep(self, devices: set[str]) -> None:
        """After placement: only the devices the model holds weights on."""
        self.probes = {d: p for d, p in self.probes.items() if d in devices}

    def read(self) -> tuple[tuple[str, int | None, int | None, int | None], ...]:
        out = tuple((d, *p.read()) for d, p in self.probes.items())
        for p in self.probes.values():
            p.reset_peak()
        return out

    def reset_peak(self) -> None:
        for p in self.probes.values():
            p.reset_peak()


def candidate_devices(max_memory: dict[int | str, int] | None) -> list[str]:
    """The devices a device map may place on: those --max-memory names, else every
    visible GPU and the CPU."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not max_memory:
        return [f"cuda:{i}" for i in range(count)] + ["cpu"]
    missing = [k for k in max_memory if isinstance(k, int) and k >= count]
    if missing:  # where NVML could not count the GPUs before the engine started
        raise UsageError(
            f"--max-memory names GPU {missing[0]}, which is not here ({count} GPUs)",
            field="max_memory",
        )
    return [f"cuda:{k}" if isinstance(k, int) else str(k) for k in max_memory]
