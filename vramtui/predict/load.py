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
from vramtui.predict.allocator import CachingAllocator, Handle
from vramtui.predict.calibration import Calibration

KEPT = -1  # an Op's tensor that is never freed: what the weight is stored as
Op = tuple[int, int]  # one tensor a load makes: (bytes, the index of the op after which
# it is freed, or KEPT)


def held(transient: tuple[int, ...], kept: tuple[int, ...]) -> tuple[Op, ...]:
    """A load item whose `transient` tensors are all alive while its `kept` ones are
    made, then freed."""
    last = len(transient) + len(kept) - 1
    return (*((n, last) for n in transient), *((n, KEPT) for n in kept))


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
    items = tuple(((size, KEPT),) for size in sizes)
    return load_items(items, sum(sizes) // 2 * 2, later, cal)


@lru_cache(maxsize=64)
def load_items(
    items: tuple[tuple[Op, ...], ...],
    warmup: int,
    later: tuple[int, ...],
    cal: Calibration,
) -> LoadFigures:
    """The load as `load_sizes`, each checkpoint tensor an item (alive while it is
    converted, then freed; working copies freed before the kept tensors are made;
    kept): a quantized weight arrives in 16-bit and is converted on the device
    (predict/quantized.py). `warmup`: the warm-up tensor."""
    alloc = CachingAllocator(cal.rules)
    if cal.load_overhead_bytes:
        alloc.malloc(cal.load_overhead_bytes)
    # caching_allocator_warmup: torch.empty(total // 2, dtype=float16), then freed
    alloc.free(alloc.malloc(warmup))
    for ops in items:
        alive: list[tuple[int, Handle]] = []
        for index, (nbytes, freed_after) in enumerate(ops):
            handle = alloc.malloc(nbytes)
            if freed_after != KEPT:
                alive.append((freed_after, handle))
            for done in [h for after, h in alive if after == index]:
                alloc.free(done)
            alive = [(after, h) for after, h in alive if after != index]
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
