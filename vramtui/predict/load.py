"""What the caching allocator holds once the model is built: the load, block by block."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vramtui.models.architecture import ModelInfo
from vramtui.predict.allocator import CachingAllocator, PoolRules
from vramtui.predict.calibration import Calibration


@dataclass(frozen=True)
class LoadFigures:
    """The allocator after the engine built the model from its architecture."""

    allocated: int  # after load: the weights' blocks (with unsplit remainders)
    reserved: int  # after load
    peak: int  # during load: the weights and the not-yet-tied lm_head at once
    reusable: int  # free blocks of at least large_alloc_min (the freed lm_head's segment)
    free_large: tuple[int, ...] = ()  # every free large-pool block, by segment and address


@lru_cache(maxsize=64)
def load_figures(model: ModelInfo, elem_bytes: int, cal: Calibration) -> LoadFigures:
    """Simulate the load on the CUDA caching allocator. `from_config` under
    `torch.device("cuda")` creates every parameter in module order, then OPTForCausalLM
    its own lm_head (vocab x word_embed_proj_dim); `tie_weights` points it at
    embed_tokens and frees that matrix. Measured on the H200 (after_load): allocated,
    reserved and the load step peak match this simulation to the byte, 125m..6.7b."""
    alloc = CachingAllocator(cal.rules)
    if cal.load_overhead_bytes:
        alloc.malloc(cal.load_overhead_bytes)
    for numel in model.parameter_numels():
        alloc.malloc(numel * elem_bytes)
    alloc.free(alloc.malloc(model.lm_head_numel * elem_bytes))
    free_large = alloc.free_large_blocks()
    return LoadFigures(
        alloc.allocated,
        alloc.reserved,
        alloc.peak_allocated,
        sum(size for size in free_large if size >= cal.rules.large_alloc_min),
        free_large,
    )


def segments_for(numels: list[int], elem_bytes: int, rules: PoolRules) -> int:
    """Bytes of the segments reserved for tensors allocated one after another and kept."""
    alloc = CachingAllocator(rules)
    for numel in numels:
        alloc.malloc(numel * elem_bytes)
    return alloc.reserved
