"""--cap: a smaller GPU emulated on a larger one.

The engine limits torch's CUDA caching allocator to `cap_bytes` with
`torch.cuda.set_per_process_memory_fraction(cap_bytes / total, device)` before the
model is built: what the allocator reserves can never exceed the cap, and an
allocation that would is an ordinary out-of-memory. The limit is the allocator's
only: the CUDA context (and anything else outside the allocator) is not under it, so
NVML's per-process figure can be above the cap. Pure: the spec's checks and the
fraction, shared by `resolve()` and the engine.
"""

from __future__ import annotations

from vramtui.errors import UsageError
from vramtui.units import format_bytes, parse_size

CAP_NEEDS_CUDA = "--cap needs a CUDA device: it limits torch's CUDA caching allocator"
# Said with every capped run (summary, JSON): which memory the cap holds, and which it doesn't
CAP_COVERS = (
    "torch's CUDA caching allocator only (reserved memory); the CUDA context is not "
    "under the cap, and NVML's per-process figure includes it"
)


def parse_cap(text: str) -> int:
    """'24GiB', '24GB', '12G', '16000MiB' or plain bytes -> bytes; a UsageError naming --cap."""
    try:
        return parse_size(text, field="cap_bytes")
    except UsageError as exc:
        raise UsageError(f"--cap: {exc}", field="cap_bytes") from None


def format_cap(cap_bytes: int) -> str:
    """'12.00 GiB (12.88 GB)': a cap is usually typed in GiB, figures are shown in GB."""
    return f"{cap_bytes / 1024**3:.2f} GiB ({format_bytes(cap_bytes, 2)})"


def check_cap(
    cap_bytes: int | None,
    backend: str,
    total_bytes: int | None,
    *,
    device: str,
    device_map: str | None = None,
) -> None:
    """A cap the run can have: positive, on one CUDA device, no larger than its memory
    (`total_bytes`, where known; the engine checks it again against torch's figure)."""
    if cap_bytes is None:
        return
    if cap_bytes <= 0:
        raise UsageError(f"--cap must be positive, got {cap_bytes} bytes", field="cap_bytes")
    if device_map is not None:
        raise UsageError(
            "--cap limits one GPU; a model placed with --device-map is limited per device "
            "with --max-memory",
            field="cap_bytes",
        )
    if backend != "cuda":
        raise UsageError(f"{CAP_NEEDS_CUDA} (the run is on {device})", field="cap_bytes")
    if total_bytes is not None:
        memory_fraction(cap_bytes, total_bytes, device=device)


def memory_fraction(cap_bytes: int, total_bytes: int, *, device: str = "the GPU") -> float:
    """The fraction of `total_bytes` that set_per_process_memory_fraction takes to hold the
    allocator to `cap_bytes`; a UsageError for a cap above the device's memory."""
    if cap_bytes <= 0:
        raise UsageError(f"--cap must be positive, got {cap_bytes} bytes", field="cap_bytes")
    if total_bytes <= 0:
        raise UsageError(f"{device} reports no memory to cap", field="cap_bytes")
    if cap_bytes > total_bytes:
        raise UsageError(
            f"--cap {format_cap(cap_bytes)} is more than {device}'s "
            f"{format_cap(total_bytes)} of memory",
            field="cap_bytes",
        )
    return cap_bytes / total_bytes


def cap_facts(cap_bytes: int, fraction: float) -> dict[str, str]:
    """What the engine reports of a cap it set, with its Hello's other facts (strings;
    the device's total memory is the Hello's own)."""
    return {
        "cap_bytes": str(cap_bytes),
        "memory_fraction": f"{fraction:.6f}",
        "cap_covers": CAP_COVERS,
    }
