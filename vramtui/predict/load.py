"""What the caching allocator holds once the model is loaded, block by block.

The engine loads random weights the way transformers loads a checkpoint
(measure/engine/random_weights.py): `caching_allocator_warmup` first allocates
one tensor the size of every tensor the checkpoint holds and frees it, so the
allocator keeps that segment; then each tensor is materialised on the device.
Tensors over 1 MiB are carved from the warm-up segment; smaller ones come from
the small pool's 2 MiB segments. The tied lm_head is never allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vramtui.models.architecture import ModelInfo
from vramtui.predict.allocator import CachingAllocator
from vramtui.predict.calibration import Calibration


@dataclass(frozen=True)
class LoadFigures:
    """The allocator after the engine loaded the model."""

    allocated: int  # after load: the weights' blocks (with unsplit remainders)
    reserved: int  # after load
    peak: int  # during load: the warm-up tensor, or the weights, whichever is larger
    reusable: int  # free large-pool blocks of at least large_alloc_min
    free_large: tuple[int, ...] = ()  # every free large-pool block, by segment and address


@lru_cache(maxsize=64)
def load_figures(model: ModelInfo, elem_bytes: int, cal: Calibration) -> LoadFigures:
    """The load of an OPT record (every checkpoint tensor in the model's dtype)."""
    sizes = tuple(numel * elem_bytes for _, numel in model.checkpoint_tensors())
    return load_sizes(sizes, (), cal)


@lru_cache(maxsize=64)
def load_sizes(sizes: tuple[int, ...], later: tuple[int, ...], cal: Calibration) -> LoadFigures:
    """Simulate the load on the CUDA caching allocator: the warm-up, then every
    checkpoint tensor (`sizes`, bytes) in the loader's order (its threads may reorder
    them, which moves addresses but not the totals), then the buffers a checkpoint
    does not hold (`later`), made once the weights are in."""
    items = tuple(((), (size,)) for size in sizes)
    return load_items(items, sum(sizes) // 2 * 2, later, cal)


@lru_cache(maxsize=64)
def load_items(
    items: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...],
    warmup: int,
    later: tuple[int, ...],
    cal: Calibration,
) -> LoadFigures:
    """The load as `load_sizes`, each checkpoint tensor an item (alive while it is
    converted, then freed; kept): a quantized weight arrives in 16-bit and is
    converted on the device (predict/quantized.py). `warmup`: the warm-up tensor."""
    alloc = CachingAllocator(cal.rules)
    if cal.load_overhead_bytes:
        alloc.malloc(cal.load_overhead_bytes)
    # caching_allocator_warmup: torch.empty(total // 2, dtype=float16), then freed
    alloc.free(alloc.malloc(warmup))
    for transient, kept in items:
        alive = [alloc.malloc(nbytes) for nbytes in transient]
        for nbytes in kept:
            alloc.malloc(nbytes)
        for handle in alive:
            alloc.free(handle)
    for nbytes in later:
        alloc.malloc(nbytes)
    free_large = alloc.free_large_blocks()
    return LoadFigures(
        alloc.allocated,
        alloc.reserved,
        alloc.peak_allocated,
        sum(size for size in free_large if size >= cal.rules.large_alloc_min),
        free_large,
    )
