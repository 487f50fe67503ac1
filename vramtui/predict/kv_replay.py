"""What the CUDA caching allocator reserves while the KV cache grows by torch.cat.

Pure. transformers' DynamicCache grows each layer's K and V by `torch.cat` every
step: a new tensor one position longer is allocated while the old one is alive,
then the old one is freed. Below 10 MiB such tensors share 20 MiB segments and
the space is reused; above it each gets a segment of its own, rounded up to
2 MiB, and a freed segment can only serve a request no larger than itself. So
each time the tensors cross a 2 MiB boundary the whole cache moves to new
segments and the old ones stay cached: too small for anything that follows,
given back only when cudaMalloc fails (the allocator then frees its cache and
retries). At batch 8 and 8 + 2000 tokens the H200 measured opt-1.3b reserving
53.5 GB for 5.89 GB allocated.

`replay_all` replays exactly that churn (every step, every layer, K then V) on
the allocator model (predict/allocator.py), from the free blocks the model's
load left, and returns the most it reserved beyond the load. `kv_cache_replay`
gives the same figure fast: it replays step by step only until every tensor
sits alone in a segment made for it and no free block could hold the next
request; from there on only block sizes matter, and a step that leaves them as
the step before did repeats until a request outgrows a block (`_Containers`).
Tensors of either pool are replayed; the step's other allocations are one
set of blocks: the prefill's, made and freed once the prompt's cache is in, so the
segments its activations leave serve the churn that follows; a decode step's, made
and freed beside the cache at its longest (it comes back every step); both first
in the free blocks the load left.

`strided=True` steps through positions in strides (STRIDE_BYTES of growth a tensor)
once the tensors have segments of their own, and in the small pool, as the replay always
does while they share 20 MiB segments: not exact, within `strided_bound` of the exact
figure (a 2 MiB rounding of the large pool per tensor), for the catalogue's many
searches.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from functools import lru_cache

from vramtui.predict.allocator import CachingAllocator, Handle, PoolRules


@dataclass(frozen=True)
class KvGrowth:
    """The cache's shape: `layers` K and V tensors of `bytes_per_position` x positions,
    from `prompt` to `prompt + tokens - 1` positions."""

    layers: int
    bytes_per_position: int
    prompt: int
    tokens: int

    @property
    def last(self) -> int:
        return self.prompt + self.tokens - 1


@dataclass(frozen=True)
class PrefillRequests:
    """The prefill forward's requests in order (tracing/traces.py): bytes asked, or
    -(i + 1) where request i is freed; `kv`: the requests that made the cache's tensors,
    each layer's K then V."""

    events: tuple[int, ...]
    kv: tuple[int, ...]


class _Replay:
    """The pool, and the cache's tensors in it, one step at a time."""

    def __init__(
        self,
        rules: PoolRules,
        free: tuple[int, ...],
        first: tuple[int, ...],
        kv: KvGrowth,
        transient: tuple[int, ...] = (),
        strided: bool = False,
        requests: PrefillRequests | None = None,
    ) -> None:
        self.rules, self.kv, self.strided = rules, kv, strided
        self.pool = CachingAllocator(rules, free)
        for nbytes in first:
            self.pool.malloc(nbytes)
        if requests is not None:  # the prefill as traced, request by request
            self.live = self.prefill(requests)
            return
        self.live = [self.alloc(kv.prompt) for _ in range(2 * kv.layers)]
        # the prefill's activations beside the prompt's cache, freed before decode:
        # their blocks serve the churn that follows
        self.place(transient)

    def prefill(self, requests: PrefillRequests) -> list[Handle]:
        """Replay the prefill's requests and frees; the cache's tensors stay."""
        made: list[Handle] = []
        for event in requests.events:
            if event > 0:
                made.append(self.pool.malloc(event))
            else:
                self.pool.free(made[-event - 1])
        return [made[i] for i in requests.kv]

    def place(self, blocks: tuple[int, ...]) -> None:
        """A step's transient: `blocks` made, then freed."""
        for handle in [self.pool.malloc(nbytes) for nbytes in blocks]:
            self.pool.free(handle)

    def copy(self) -> _Replay:
        """An independent replay in the same state."""
        twin = _Replay.__new__(_Replay)
        twin.rules, twin.kv, twin.strided = self.rules, self.kv, self.strided
        twin.pool, twin.live = self.pool.copy(), self.live[:]
        return twin

    def alloc(self, positions: int) -> Handle:
        return self.pool.malloc(positions * self.kv.bytes_per_position)

    def step(self, positions: int) -> None:
        self.pool.churn(self.live, positions * self.kv.bytes_per_position)

    def stride(self, positions: int) -> int:
        """Positions to the next replayed step: one, but while the tensors share 20 MiB
        large-pool segments, as many as grow them by at most 1 MiB. `strided`: in the
        small pool too (SMALL_STRIDE_BYTES), and once they have segments of their own
        (STRIDE_BYTES)."""
        rules, bpp = self.rules, self.kv.bytes_per_position
        size = rules.block_size(positions * bpp)
        if size <= rules.small_block_max:  # a cache of no bytes a position stays here
            return max(1, SMALL_STRIDE_BYTES // max(bpp, 1)) if self.strided else 1
        if size >= rules.large_alloc_min:
            return max(1, STRIDE_BYTES // bpp) if self.strided else 1
        shared_until = -(-rules.large_alloc_min // bpp)  # the first size with its own segment
        most = max(1, rules.small_block_max // bpp)
        return max(1, min(most, shared_until - positions))

    def one_per_block(self, positions: int) -> bool:
        """From here on every block that could hold a tensor holds one at most: each
        tensor has its own segment (or free region), of 10 MiB or more, and no free
        block is twice the next request."""
        rules, bpp = self.rules, self.kv.bytes_per_position
        following = rules.block_size((positions + 1) * bpp)
        if rules.block_size(positions * bpp) < rules.large_alloc_min:
            return False
        if len({h[0] for h in self.live}) < len(self.live):
            return False
        sizes = self.pool.free_sizes() + [self.pool.freed_size(h) for h in self.live]
        return max(sizes) < 2 * following


class _Containers:
    """The churn once every block holds one tensor at most: only sizes matter.

    `free`: the free blocks that can still hold a tensor; `containers`: for each
    tensor (K and V of every layer, in order), the free block freeing it makes.
    A request takes the smallest free block that holds it, else a new segment."""

    def __init__(
        self,
        rules: PoolRules,
        kv: KvGrowth,
        free: tuple[int, ...],
        containers: tuple[int, ...],
        in_use: int = 0,
        peak_in_use: int = 0,
    ) -> None:
        self.rules, self.kv = rules, kv
        self.free, self.containers = sorted(free), list(containers)
        # segments in use besides the tensors' containers, and the peak in use so far
        self.other, self.peak_in_use = max(0, in_use - sum(containers)), peak_in_use

    @classmethod
    def of(cls, replay: _Replay, kv: KvGrowth) -> _Containers:
        """The churn from the replay's pool on, to `kv`'s last position."""
        pool = replay.pool
        containers = tuple(pool.freed_size(h) for h in replay.live)
        return cls(
            replay.rules, kv, tuple(pool.free_sizes()), containers, pool.in_use, pool.peak_in_use
        )

    def _in_use(self, held: int) -> None:
        self.peak_in_use = max(self.peak_in_use, self.other + held)

    def size(self, positions: int) -> int:
        return self.rules.block_size(positions * self.kv.bytes_per_position)

    def step(self, positions: int) -> int:
        """One step's churn; the bytes of the new segments it reserves."""
        request = self.size(positions)
        free = [f for f in self.free if f >= request]  # the rest can hold nothing again
        added = 0
        taken = []
        held = sum(self.containers)  # each tensor's container in use, old and new at once
        for old in self.containers:
            if free:
                taken.append(free.pop(0))
            else:
                segment = self.rules.segment_size(request)
                taken.append(segment)
                added += segment
            self._in_use(held + taken[-1])
            held += taken[-1] - old
            if old >= request:
                insort(free, old)
        self.free, self.containers = free, taken
        return added

    def place(self, blocks: tuple[int, ...]) -> int:
        """Bytes of the new segments a step's transient `blocks` take at the end (each in
        the smallest free block that holds it, else a segment of its own)."""
        free, added, held = sorted(self.free), 0, sum(self.containers)
        for size in sorted((self.rules.block_size(n) for n in blocks), reverse=True):
            fits = [f for f in free if f >= size]
            if fits:
                free.remove(fits[0])
                held += fits[0]
                if self.rules.worth_splitting(fits[0] - size, False):
                    insort(free, fits[0] - size)
            else:
                added += self.rules.segment_size(size)
                held += self.rules.segment_size(size)
            self._in_use(held)
        return added

    def run(self, positions: int) -> int:
        """Bytes of the new segments from `positions` to the cache's last position. A step
        that leaves everything as the one before did repeats until a request outgrows a
        block: those steps are skipped."""
        added, before = 0, None
        while positions < self.kv.last:
            positions += 1
            added += self.step(positions)
            state = (tuple(self.free), tuple(sorted(self.containers)))
            if state == before:
                smallest = min(self.free + self.containers)
                while positions < self.kv.last and self.size(positions + 1) <= smallest:
                    positions += 1
            before = state
        return added


# Before the churn settles, the replay does not depend on where the cache stops (a
# stride never passes it; only the last step is cut short): one replay serves every
# run of the same shape. Every CHECKPOINT_STEPS steps its state is kept, by shape, and
# a longer or shorter run goes on from the last one before its end.
CHECKPOINT_STEPS = 64
# a strided replay's growth of each tensor between steps: in segments of its own, and in
# the small pool (at most 1 MiB: four steps)
STRIDE_BYTES = 1024**2
SMALL_STRIDE_BYTES = 256 * 1024
SHAPES_KEPT = 64
_CHECKPOINTS: dict[tuple[object, ...], list[tuple[int, _Replay]]] = {}


@dataclass(frozen=True)
class CacheReserve:
    """What the replay found: `grown`, the bytes of the new segments (reserved beyond the
    load's); `needed`, the peak of those in use (holding a block) at once, the least the
    allocator needs beyond the load where it gives cached segments back (see
    predict/allocator.py)."""

    grown: int
    needed: int


@lru_cache(maxsize=32)
def kv_cache_replay(
    rules: PoolRules,
    free_after_load: tuple[int, ...],
    first_blocks: tuple[int, ...],
    kv: KvGrowth,
    prefill: tuple[int, ...] = (),
    decode: tuple[int, ...] = (),
    strided: bool = False,
    requests: PrefillRequests | None = None,
) -> CacheReserve:
    """Most bytes of new segments (both pools) while the cache grows (see the module),
    and the most of them in use at once.
    `first_blocks` are allocated first and kept (the cuBLAS workspaces); `prefill`: the
    prefill's other allocations, blocks made and freed once the prompt's cache is in;
    `decode`: a decode step's, made and freed beside the cache at its longest;
    `strided`: in strides where the tensors have segments of their own (see the module);
    `requests`: the prefill as traced, in place of the prompt's cache and `prefill`."""
    key = (
        rules, free_after_load, first_blocks, prefill, kv.layers, kv.bytes_per_position,
        kv.prompt, strided, requests,
    )  # fmt: skip
    if key not in _CHECKPOINTS and len(_CHECKPOINTS) >= SHAPES_KEPT:
        _CHECKPOINTS.clear()
    kept = _CHECKPOINTS.setdefault(key, [])
    before = [point for point in kept if point[0] < kv.last]
    if before:
        positions, replay = before[-1][0], before[-1][1].copy()
    else:
        positions, replay = (
            kv.prompt,
            _Replay(rules, free_after_load, first_blocks, kv, prefill, strided, requests),
        )
    stepped = 0
    while positions < kv.last:
        if replay.one_per_block(positions):
            containers = _Containers.of(replay, kv)
            added = containers.run(positions)
            added += containers.place(decode)
            return CacheReserve(replay.pool.reserved + added, containers.peak_in_use)
        following = positions + replay.stride(positions)
        positions = min(following, kv.last)
        replay.step(positions)
        stepped += 1
        last_kept = kept[-1][0] if kept else kv.prompt
        if following <= kv.last and stepped % CHECKPOINT_STEPS == 0 and positions > last_kept:
            kept.append((positions, replay.copy()))
    replay.place(decode)
    return CacheReserve(replay.pool.reserved, replay.pool.peak_in_use)


def strided_bound(rules: PoolRules, layers: int) -> int:
    """How far a strided replay's figure may lie from the exact one, either way: one
    rounding of the large pool (2 MiB) for each of the cache's K and V tensors."""
    return 2 * layers * rules.large_round_bytes


def clear_caches() -> None:
    """Forget every replay (benchmarks and tests that time or vary it)."""
    kv_cache_replay.cache_clear()
    _CHECKPOINTS.clear()


def replay_all(
    rules: PoolRules,
    free_after_load: tuple[int, ...],
    first_blocks: tuple[int, ...],
    kv: KvGrowth,
    prefill: tuple[int, ...] = (),
    decode: tuple[int, ...] = (),
    requests: PrefillRequests | None = None,
) -> CacheReserve:
    """`kv_cache_replay`'s answer with every step replayed: the reference it is held to."""
    replay = _Replay(rules, free_after_load, first_blocks, kv, prefill, requests=requests)
    for positions in range(kv.prompt + 1, kv.last + 1):
        replay.step(positions)
    replay.place(decode)
    return CacheReserve(replay.pool.reserved, replay.pool.peak_in_use)
