"""GPU cards people name ("rtx-4090", "t4", "h100"), with the memory a process gets on each.

Pure Python. Vendors write a card's memory in "GB" but sell it in binary units: the
RTX 4090's "24 GB" is 24 GiB of GDDR6X, and the H100's "80GB" is 80 GiB of HBM3
(its process-visible total, 79.18 GiB, would be impossible under 80 x 10^9 B). So
`memory_bytes` is the vendor's figure read as GiB. A process sees less than that
(the driver keeps some) and spends part of what it sees on the CUDA context and the
libraries torch loads; both are measured on Hopper cards and assumed elsewhere:
`Card.visible_source` and `Card.context_source` say which, and where each figure
comes from.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from vramtui.errors import UsageError

GiB = 1024**3
MiB = 1024**2

# The CUDA context and the libraries torch loads: NVML per-process memory minus the
# allocator's reserved, 678 MiB (610 at load + 68 at the first GEMM) on an H200
# (benchmarks/results/calibrate, predict/calibration.py) and on an H100
# (benchmarks/results/gpu_checks/cap-3gib-h100.json: 3,393,191,936 - 2,682,257,408 B),
# driver 580.159.04, torch 2.11.0+cu130, CUDA 13.0, cuDNN attention off.
HOPPER_CONTEXT_BYTES = 678 * MiB
CONTEXT_MEASURED = (
    "678 MiB, measured on an H100 and an H200 (driver 580.159.04, torch 2.11.0+cu130; "
    "benchmarks/results/gpu_checks, benchmarks/results/calibrate)"
)
CONTEXT_ASSUMED = (
    "678 MiB assumed: measured on Hopper only (the context's size depends on the "
    "driver, the architecture's kernels and torch's build)"
)

# What torch sees of a card (cudaMemGetInfo's total), measured: H100 80GB HBM3
# 85,017,493,504 B (benchmarks/results/gpu_checks/*.json, device_total_bytes, from
# torch.cuda) of 80 GiB; H200 150,109,880,320 B ("total capacity of 139.80 GiB",
# benchmarks/results/oom_real/oom_real.json, gpu_total_bytes) of 141 GiB. The larger
# share hidden, the H100's, is assumed for every card not measured.
H100_VISIBLE_BYTES = 85_017_493_504
H200_VISIBLE_BYTES = 150_109_880_320
HIDDEN_FRACTION = 1 - H100_VISIBLE_BYTES / (80 * GiB)  # 1.03 %
VISIBLE_ASSUMED = (
    "assumed: the nominal size less 1.03 %, the share an H100 hides from torch "
    "(an H200 hides 0.85 %)"
)


@dataclass(frozen=True)
class Card:
    """One GPU model: its memory as sold, what a process sees of it, and its context."""

    name: str  # what people type: "rtx-4090"
    label: str  # the product's name
    nominal: str  # the vendor's figure, as written: "24 GB"
    memory_bytes: int  # the vendor's figure in binary units (24 GiB)
    arch: str
    visible_bytes: int | None = None  # torch's total on this card, where measured
    visible_source: str = VISIBLE_ASSUMED
    context_bytes: int = HOPPER_CONTEXT_BYTES
    context_source: str = CONTEXT_ASSUMED

    @property
    def total_bytes(self) -> int:
        """The memory a process sees: measured, or the nominal size less the share
        hidden on an H100."""
        if self.visible_bytes is not None:
            return self.visible_bytes
        return int(self.memory_bytes * (1 - HIDDEN_FRACTION))

    @property
    def measured(self) -> bool:
        return self.visible_bytes is not None


def _card(name: str, label: str, gib: int, arch: str, nominal: str = "") -> Card:
    return Card(name, label, nominal or f"{gib} GB", gib * GiB, arch)


CARDS: dict[str, Card] = {
    c.name: c
    for c in (
        _card("rtx-3060", "NVIDIA GeForce RTX 3060", 12, "Ampere"),
        _card("rtx-3090", "NVIDIA GeForce RTX 3090", 24, "Ampere"),
        _card("rtx-4060-ti-16gb", "NVIDIA GeForce RTX 4060 Ti 16GB", 16, "Ada Lovelace"),
        _card("rtx-4080", "NVIDIA GeForce RTX 4080", 16, "Ada Lovelace"),
        _card("rtx-4090", "NVIDIA GeForce RTX 4090", 24, "Ada Lovelace"),
        _card("rtx-5090", "NVIDIA GeForce RTX 5090", 32, "Blackwell"),
        _card("t4", "NVIDIA T4", 16, "Turing"),
        _card("a10", "NVIDIA A10", 24, "Ampere"),
        _card("l4", "NVIDIA L4", 24, "Ada Lovelace"),
        _card("l40s", "NVIDIA L40S", 48, "Ada Lovelace"),
        _card("a100-40gb", "NVIDIA A100 40GB", 40, "Ampere"),
        _card("a100-80gb", "NVIDIA A100 80GB", 80, "Ampere"),
        Card(
            "h100", "NVIDIA H100 80GB HBM3", "80GB", 80 * GiB, "Hopper",
            H100_VISIBLE_BYTES, "measured: torch's total on an H100 (benchmarks/results/"
            "gpu_checks)", HOPPER_CONTEXT_BYTES, CONTEXT_MEASURED,
        ),
        Card(
            "h200", "NVIDIA H200", "141GB", 141 * GiB, "Hopper", H200_VISIBLE_BYTES,
            "measured: torch's total on an H200 (benchmarks/results/oom_real)",
            HOPPER_CONTEXT_BYTES, CONTEXT_MEASURED,
        ),
        _card("mi300x", "AMD Instinct MI300X", 192, "CDNA 3 (ROCm: not checked)"),
    )
}  # fmt: skip

# Other spellings people type for the same card.
ALIASES = {
    "4090": "rtx-4090",
    "3090": "rtx-3090",
    "3060": "rtx-3060",
    "4080": "rtx-4080",
    "5090": "rtx-5090",
    "rtx-4060-ti": "rtx-4060-ti-16gb",
    "a100": "a100-80gb",
    "h100-80gb": "h100",
    "h200-141gb": "h200",
}


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "-").replace("_", "-")


def card_names() -> list[str]:
    return list(CARDS)


def lookup_card(name: str) -> Card:
    """A card by the name people type (any case, spaces or dashes); an unknown name is
    one line suggesting the closest."""
    key = _key(name)
    key = ALIASES.get(key, key)
    if key in CARDS:
        return CARDS[key]
    close = difflib.get_close_matches(key, [*CARDS, *ALIASES], n=3, cutoff=0.5)
    named = list(dict.fromkeys(ALIASES.get(c, c) for c in close))
    hint = f" (did you mean {', '.join(named)}?)" if named else ""
    raise UsageError(
        f"unknown GPU {name!r}{hint}; known: {', '.join(CARDS)}; or pass --memory SIZE",
        field="gpu",
    )


def card_for_device(device_name: str) -> Card | None:
    """The card a driver's device name is ("NVIDIA H100 80GB HBM3" -> h100), if known."""
    wanted = device_name.strip().lower()
    for card in CARDS.values():
        if card.label.lower() == wanted:
            return card
    return None


@dataclass(frozen=True)
class Target:
    """The memory a plan is for, and where each figure comes from."""

    label: str
    total_bytes: int  # what a process sees
    total_source: str
    context_bytes: int  # the CUDA context and libraries, outside the allocator
    context_source: str

    def with_context(self, context_bytes: int, source: str) -> Target:
        return Target(self.label, self.total_bytes, self.total_source, context_bytes, source)


def card_target(card: Card) -> Target:
    label = f"{card.label} ({card.nominal}, read as {card.memory_bytes // GiB} GiB)"
    return Target(
        label, card.total_bytes, card.visible_source, card.context_bytes, card.context_source
    )


def memory_target(total_bytes: int, label: str, source: str) -> Target:
    """A card known only by its memory (--memory, or an unknown GPU's NVML total)."""
    return Target(label, total_bytes, source, HOPPER_CONTEXT_BYTES, CONTEXT_ASSUMED)


def cap_target(cap_bytes: int) -> Target:
    """The allocator capped at `cap_bytes` (`vramtui run --cap`): the CUDA context is
    outside the cap."""
    return Target(
        "torch's caching allocator capped (--cap)", cap_bytes, "the cap", 0,
        "outside the cap (not counted)",
    )  # fmt: skip
