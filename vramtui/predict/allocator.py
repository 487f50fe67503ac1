"""A model of PyTorch's CUDA caching allocator: the one simulator the estimator uses.

Pure. It follows c10/cuda/CUDACachingAllocator.cpp for one stream: every block
is a multiple of 512 B; requests up to 1 MiB come from the small pool's 2 MiB
segments, larger ones from the large pool (a 20 MiB segment under 10 MiB, else
a segment rounded up to 2 MiB). Best fit: the smallest free block of the pool
that is big enough, the oldest segment and lowest address first among equals.
A free block is split when the rest is worth a block of its pool (>= 512 B in
the small pool, > 1 MiB in the large one); otherwise the whole block is handed
out and counted in `allocated`. Freed blocks merge with free neighbours;
segments are never given back (no empty_cache, no OOM retry).

What a run needs of a card is less than what it reserves: where cudaMalloc fails (the
card is full, or a cap set with set_per_process_memory_fraction is reached) the
allocator gives back every cached segment no block is using and tries again. So the
pool also counts the bytes of the segments in use (holding at least one block) and
their peak: the least a card must leave the allocator for the run to go on.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

MiB = 1024**2


@dataclass(frozen=True)
class PoolRules:
    """The allocator's constants (c10/cuda/CUDACachingAllocator.cpp)."""

    block_bytes: int = 512  # kMinBlockSize
    small_block_max: int = 1 * MiB  # kSmallSize: at most this goes to the small pool
    small_segment_bytes: int = 2 * MiB  # kSmallBuffer
    large_segment_bytes: int = 20 * MiB  # kLargeBuffer: for requests under large_alloc_min
    large_alloc_min: int = 10 * MiB  # kMinLargeAlloc
    large_round_bytes: int = 2 * MiB  # kRoundLarge

    def block_size(self, nbytes: int) -> int:
        """What a request of `nbytes` asks the pool for: rounded up to 512 B."""
        b = self.block_bytes
        return -(-max(nbytes, 1) // b) * b

    def segment_size(self, size: int) -> int:
        """The segment reserved for a block of `size` when no free block fits it."""
        if size <= self.small_block_max:
            return self.small_segment_bytes
        if size < self.large_alloc_min:
            return self.large_segment_bytes
        return -(-size // self.large_round_bytes) * self.large_round_bytes

    def worth_splitting(self, rest: int, small: bool) -> bool:
        return rest >= self.block_bytes if small else rest > self.small_block_max


Handle = tuple[int, int]  # (segment id, offset of the block in it)


class _Segment:
    __slots__ = ("small", "blocks", "ends", "size", "used")

    def __init__(self, small: bool, size: int, pinned: bool = False) -> None:
        self.small, self.size = small, size
        # blocks in use; a pinned segment (the load's, present before the first request)
        # counts as in use always (-1), whatever its blocks
        self.used = -1 if pinned else 0
        # offset -> the block's size, negated while it is free (one int: the hot path
        # reads and writes it without a container of its own)
        self.blocks: dict[int, int] = {0: -size}
        self.ends: dict[int, int] = {size: 0}  # end offset -> offset, for merging

    def copy(self) -> _Segment:
        twin = _Segment.__new__(_Segment)
        twin.small, twin.size, twin.used = self.small, self.size, self.used
        twin.blocks, twin.ends = dict(self.blocks), dict(self.ends)
        return twin


NO_BLOCK: Handle = (-1, 0)  # `churn`: a new block with no old one to free (no segment)


class CachingAllocator:
    """Segments, blocks and free lists of both pools, with allocated/reserved figures.

    `free_blocks` are free large-pool blocks present before the first request
    (what an earlier phase left), each in a segment not counted in `reserved`.
    """

    def __init__(self, rules: PoolRules, free_blocks: tuple[int, ...] = ()) -> None:
        self.rules = rules
        self.segments: list[_Segment] = []
        # Free blocks per pool, sorted by (size, segment id, offset): best fit is a bisect.
        self._free: dict[bool, list[tuple[int, int, int]]] = {True: [], False: []}
        self.allocated = self.reserved = self.peak_allocated = 0
        # bytes of the segments made here that hold a block, and their peak
        self.in_use = self.peak_in_use = 0
        for size in free_blocks:
            self._new_segment(False, size, pinned=True)

    def copy(self) -> CachingAllocator:
        """An independent pool in the same state (what copy.deepcopy gives, faster)."""
        twin = CachingAllocator.__new__(CachingAllocator)
        twin.rules = self.rules
        twin.segments = [segment.copy() for segment in self.segments]
        twin._free = {small: blocks[:] for small, blocks in self._free.items()}
        twin.allocated, twin.reserved = self.allocated, self.reserved
        twin.peak_allocated = self.peak_allocated
        twin.in_use, twin.peak_in_use = self.in_use, self.peak_in_use
        return twin

    def _new_segment(self, small: bool, size: int, pinned: bool = False) -> None:
        self.segments.append(_Segment(small, size, pinned))
        insort(self._free[small], (size, len(self.segments) - 1, 0))

    def malloc(self, nbytes: int) -> Handle:
        made = [NO_BLOCK]
        self.churn(made, nbytes)
        return made[0]

    def churn(self, live: list[Handle], nbytes: int) -> None:
        """Each block of `live` in turn replaced by one of `nbytes`: the new block made
        (best fit, split where the rest is worth a block), then the old one freed
        (NO_BLOCK: none). One loop with its lookups bound once: growing the KV cache by
        torch.cat is the replay's hot path."""
        rules = self.rules
        b = rules.block_bytes
        size = -(-max(nbytes, 1) // b) * b
        small = size <= rules.small_block_max
        # worth_splitting: rest >= block_bytes (small pool), rest > small_block_max (large)
        keep_rest = b - 1 if small else rules.small_block_max
        free, segments, release = self._free[small], self.segments, self.free
        probe = (size, -1, -1)
        for j, old in enumerate(live):
            i = bisect_left(free, probe)
            if i == len(free):
                segment_bytes = rules.segment_size(size)
                self._new_segment(small, segment_bytes)
                self.reserved += segment_bytes
                i = bisect_left(free, probe)
            block_size, sid, offset = free.pop(i)
            segment = segments[sid]
            rest = block_size - size
            if rest > keep_rest:
                segment.blocks[offset] = size
                segment.blocks[offset + size] = -rest
                segment.ends[offset + size] = offset
                segment.ends[offset + block_size] = offset + size
                insort(free, (rest, sid, offset + size))
                block_size = size
            else:
                segment.blocks[offset] = block_size  # the whole block handed out
            self.allocated += block_size
            if self.allocated > self.peak_allocated:
                self.peak_allocated = self.allocated
            if not segment.used:  # a cached segment taken into use again
                self.in_use += segment.size
                if self.in_use > self.peak_in_use:
                    self.peak_in_use = self.in_use
            if segment.used >= 0:
                segment.used += 1
            live[j] = (sid, offset)
            if old[0] >= 0:  # not NO_BLOCK
                release(old)

    def free(self, handle: Handle) -> None:
        sid, offset = handle
        segment = self.segments[sid]
        blocks, ends = segment.blocks, segment.ends
        free = self._free[segment.small]
        size = blocks.pop(offset)
        del ends[offset + size]
        self.allocated -= size
        if segment.used > 0:
            segment.used -= 1
            if not segment.used:  # nothing in it now: the allocator could give it back
                self.in_use -= segment.size
        end = offset + size
        after = blocks.get(end, 0)
        if after < 0:  # merge with the free block after it
            del free[bisect_left(free, (-after, sid, end))]
            del blocks[end]
            del ends[end - after]
            size -= after
        before = ends.get(offset)
        if before is not None and blocks[before] < 0:  # and the one before
            del free[bisect_left(free, (-blocks.pop(before), sid, before))]
            del ends[offset]
            size += offset - before
            offset = before
        blocks[offset] = -size
        ends[offset + size] = offset
        insort(free, (size, sid, offset))

    def freed_size(self, handle: Handle) -> int:
        """The free block freeing this block would make: itself and its free neighbours."""
        sid, offset = handle
        segment = self.segments[sid]
        size = segment.blocks[offset]
        after = segment.blocks.get(offset + size, 0)
        before = segment.ends.get(offset)
        total = size - min(after, 0)
        if before is not None and segment.blocks[before] < 0:
            total -= segment.blocks[before]
        return total

    def free_sizes(self, small: bool = False) -> list[int]:
        """The sizes of a pool's free blocks, smallest first."""
        return [size for size, _, _ in self._free[small]]

    def free_large_blocks(self) -> tuple[int, ...]:
        """Every free large-pool block's size, by segment and address."""
        return tuple(
            -size
            for segment in self.segments
            if not segment.small
            for _, size in sorted(segment.blocks.items())
            if size < 0
        )
