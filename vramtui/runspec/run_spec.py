"""What to run: the RunSpec, a frozen record of every choice a run depends on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES

SOURCES = ("architecture", "config", "checkpoint")
ATTENTION = ("sdpa", "eager")
# transformers' cache_implementation: a DynamicCache grown by torch.cat, a StaticCache
# allocated for every position at the start, or the dynamic one offloaded to the CPU
CACHES = ("dynamic", "static", "offloaded", "quantized")
DTYPES = tuple(DTYPE_BYTES)
# The caching allocator's settings, read from the environment by the engine (and
# recorded with every run): expandable segments change reserved memory a great deal.
ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"


@dataclass(frozen=True)
class RunSpec:
    """One generation run. `dtype=None` and `device='auto'` are resolved by `resolve()`."""

    model: str = "opt-125m"
    source: str = "architecture"  # architecture | config | checkpoint
    path: str | None = None  # config.json (source=config) or folder / hub id (checkpoint)
    tokens: int = 200
    prompt_tokens: int = 8
    prompt: str | None = None
    batch: int = 1
    dtype: str | None = None
    attn: str = "sdpa"
    device: str = "auto"
    seed: int = 0
    allow_download: bool = False
    allow_pickle: bool = False
    # torch 2.11 on Hopper picks cuDNN for sdpa, which builds a graph for every
    # new sequence length: a first pass through 2000 tokens runs ~9x slower. Off
    # unless asked for.
    cudnn_sdpa: bool = False
    cache: str = "dynamic"  # see CACHES
    # --snapshot: where the engine writes the allocator's snapshot (CUDA only; None: off)
    snapshot: str | None = None
    # placement across devices, as from_pretrained takes it (see vramtui.runspec.device_map):
    # auto | balanced | balanced_low_0 | sequential, and e.g. "0=70GiB,1=80GiB,cpu=200GiB"
    device_map: str | None = None
    max_memory: str | None = None
    # --cap: the most torch's CUDA caching allocator may reserve on the run's GPU, in bytes
    # (set_per_process_memory_fraction), to run as on a smaller card; None: the whole card
    cap_bytes: int | None = None
    # --quant: weights quantized by transformers' quantizer (see vramtui.runspec.quant);
    # --double-quant: bitsandbytes 4-bit's quantized constants
    quant: str = "none"
    double_quant: bool = False
    # --cache quantized: transformers' QuantizedCache, its nbits
    cache_bits: int = 4
    # tensor parallel: the ranks the model is sharded over (transformers' tp_plan)
    tp: int = 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunSpec:
        return cls(**known_values(cls, data, "run spec"))

    @property
    def label(self) -> str:
        return self.model if self.source == "architecture" else f"{self.model} ({self.source})"


def known_values(cls: type, data: dict[str, object], what: str) -> dict[str, Any]:
    """`data` as keyword arguments of the dataclass `cls`; a name it lacks is refused."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise UsageError(f"unknown {what} fields: {', '.join(unknown)}")
    return dict(data)


def resolve_dtype(dtype: str | None, backend: str) -> str:
    """float16 on GPUs by default, float32 on the CPU."""
    if dtype is None:
        return "float32" if backend == "cpu" else "float16"
    return dtype


def expandable_segments(alloc_conf: str | None) -> bool:
    """Whether a PYTORCH_CUDA_ALLOC_CONF value turns expandable segments on."""
    return "expandable_segments:true" in (alloc_conf or "").replace(" ", "").lower()


def model_label(path: str) -> str:
    """A short name for a config or checkpoint path: its file stem or folder name."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        return path
    last = parts[-1]
    if last == "config.json" and len(parts) > 1:
        return parts[-2]
    return last.removesuffix(".json")
