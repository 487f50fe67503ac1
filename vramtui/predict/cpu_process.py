"""What the Python process itself holds on the CPU, added to a CPU estimate.

On the CPU the engine's figure is its resident memory (RSS): the tensors plus the
Python process with torch and transformers imported. That part depends above all on
the torch build: a CUDA build loads its CUDA libraries even when no GPU is used.
Both figures are the engine's RSS right after building the 118 kB tiny-opt test
model, less its weights (benchmarks/cpu_process.py, results in
benchmarks/results/cpu_process/), on the 2-core development machine (AMD EPYC,
Python 3.11.7, transformers 5.24.0). Other platforms differ by tens of MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata


@dataclass(frozen=True)
class CpuProcess:
    bytes: int
    source: str


CPU_TORCH = CpuProcess(358_000_000, "torch's CPU build (2.13.0+cpu: 357.7-357.8 MB)")
CUDA_TORCH = CpuProcess(802_000_000, "a CUDA build of torch (2.14.1+cu130: 801.9-802.1 MB)")
CPU_CALIBRATION = (
    "measured on a 2-core AMD EPYC, Python 3.11.7, transformers 5.24.0 "
    "(benchmarks/results/cpu_process)"
)


def torch_is_cuda_build() -> bool | None:
    """Whether the installed torch is a CUDA build, from its package metadata (torch
    is not imported: this is for estimates, which must be fast); None without torch."""
    try:
        version = metadata.version("torch")
        requires = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return None
    if "+cpu" in version:
        return False
    return "+cu" in version or any(r.startswith("nvidia-") for r in requires)


@lru_cache(maxsize=1)
def cpu_process() -> CpuProcess:
    """The figure for the torch installed here (the CPU build's when unknown)."""
    return CUDA_TORCH if torch_is_cuda_build() else CPU_TORCH
