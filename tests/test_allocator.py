"""The caching-allocator model (both pools) and the replay of the KV cache's churn."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramtui.predict.allocator import CachingAllocator, PoolRules
from vramtui.predict.kv_replay import KvGrowth, kv_cache_replay

MiB = 2**20
RULES = PoolRules()


def test_large_requests_get_2_mib_rounded_segments_and_small_ones_share_20_mib() -> None:
    pool = CachingAllocator(RULES)
    a = pool.malloc(3 * MiB)  # under 10 MiB: a 20 MiB segment, the rest split off
    b = pool.malloc(3 * MiB)  # fits the rest of the same segment
    assert pool.reserved == 20 * MiB and a[0] == b[0]
    pool.malloc(11 * MiB)  # best fit: the 14 MiB left of that segment
    assert pool.reserved == 20 * MiB
    pool.malloc(15 * MiB + 1)  # nothing that large is free: a segment rounded up to 16 MiB
    assert pool.reserved == 36 * MiB


def test_a_freed_segment_serves_no_larger_request() -> None:
    pool = CachingAllocator(RULES)
    old = pool.malloc(12 * MiB)
    pool.free(old)
    again = pool.malloc(12 * MiB)  # reused: nothing new
    assert pool.reserved == 12 * MiB and again == old
    pool.free(again)
    pool.malloc(12 * MiB + 512)  # too big for the cached 12 MiB: a new 14 MiB segment
    assert pool.reserved == 26 * MiB


def test_freed_neighbours_merge_into_one_block() -> None:
    pool = CachingAllocator(RULES)
    a, b = pool.malloc(4 * MiB), pool.malloc(4 * MiB)
    pool.free(a)
    pool.free(b)
    assert pool.free_large_blocks() == (20 * MiB,)  # the whole segment, free again
    assert pool.allocated == 0 and pool.peak_allocated == 8 * MiB


def test_small_requests_share_2_mib_segments_in_512_byte_blocks() -> None:
    pool = CachingAllocator(RULES)
    a = pool.malloc(1)  # rounded up to one 512-byte block
    b = pool.malloc(1 * MiB)  # the small pool's largest request
    assert pool.reserved == 2 * MiB and a[0] == b[0]
    assert pool.allocated == 512 + MiB
    pool.malloc(MiB)  # 1 MiB - 512 B left: too small, a second small segment
    assert pool.reserved == 4 * MiB
    assert pool.free_large_blocks() == ()  # small segments are not the large pool's


def test_a_remainder_not_worth_a_block_is_handed_out_and_counted() -> None:
    pool = CachingAllocator(RULES)
    pool.malloc(19 * MiB + 512)  # over 10 MiB: a segment rounded up to 20 MiB
    assert pool.reserved == 20 * MiB
    assert pool.allocated == 20 * MiB  # the 1 MiB - 512 B rest is not split off


def test_free_blocks_of_an_earlier_phase_are_used_before_new_segments() -> None:
    pool = CachingAllocator(RULES, free_blocks=(30 * MiB,))
    pool.malloc(25 * MiB)
    assert pool.reserved == 0  # the earlier phase's free block served it


def test_the_segments_in_use_are_counted_and_a_cached_one_taken_again_counts_again() -> None:
    """What a card must leave the allocator: the segments holding a block at once (a
    wholly free one is given back before an out-of-memory), not every one reserved; the
    load's blocks (present before the first request) are the load's."""
    pool = CachingAllocator(RULES)
    a = pool.malloc(15 * MiB)  # a 16 MiB segment
    pool.malloc(15 * MiB)
    assert pool.in_use == pool.peak_in_use == pool.reserved == 32 * MiB
    pool.free(a)
    assert (pool.in_use, pool.peak_in_use, pool.reserved) == (16 * MiB, 32 * MiB, 32 * MiB)
    pool.malloc(17 * MiB)  # no cached block holds it: a third segment, two in use
    assert (pool.in_use, pool.peak_in_use, pool.reserved) == (34 * MiB, 34 * MiB, 50 * MiB)
    pool.malloc(15 * MiB)  # the cached 16 MiB segment taken again
    assert (pool.in_use, pool.reserved) == (50 * MiB, 50 * MiB)
    loaded = CachingAllocator(RULES, free_blocks=(30 * MiB,))
    loaded.malloc(25 * MiB)
    assert loaded.in_use == loaded.peak_in_use == 0


def test_growth_past_the_shared_segments_leaves_a_trail_and_small_growth_none() -> None:
    # one layer, K and V of 64 kB a position, 320 -> 400 positions: 20 -> 25 MiB
    grown = kv_cache_replay(RULES, (), (), KvGrowth(1, 64 * 1024, 320, 81)).grown
    # every 2 MiB step leaves the two old segments cached: 20+22+24 MiB (x2) + 26 (x2)
    # live, plus one spare of the size in use
    assert grown >= 2 * (20 + 22 + 24 + 26) * MiB
    # at most 1 MiB a tensor: the small pool, one 2 MiB segment for K and V
    small = kv_cache_replay(RULES, (), (), KvGrowth(1, 256, 8, 2000)).grown
    assert small == 2 * MiB


CELLS = [  # (model, batch, prompt, tokens): cells whose cache balloons
    ("opt-125m", 8, 8, 2040),
    ("opt-1.3b", 8, 100, 1900),
    ("opt-2.7b", 8, 8, 1000),
    ("opt-13b", 8, 8, 300),
    ("opt-30b", 2, 8, 1000),
    ("opt-66b", 4, 8, 1000),
]


def _growth(name: str, batch: int, prompt: int, tokens: int):  # type: ignore[no-untyped-def]
    from vramtui.models.opt import opt_model
    from vramtui.predict.calibration import DEFAULT
    from vramtui.predict.kv_replay import KvGrowth
    from vramtui.predict.steps import StepModel

    info = opt_model(name)
    steps = StepModel(info, prompt, batch, "float16", "sdpa", "cuda", DEFAULT)
    workspaces = (DEFAULT.cublas_workspace_bytes, DEFAULT.cublaslt_workspace_bytes)
    kv = KvGrowth(info.layers, steps.kv_row, prompt, tokens)
    return DEFAULT.rules, steps.load.free_large, workspaces, kv


@pytest.mark.parametrize("cell", CELLS)
def test_the_fast_replay_counts_the_regular_churn_exactly(
    cell: tuple[str, int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.predict import kv_replay

    args = _growth(*cell)
    exact = kv_replay.replay_all(*args).grown
    # Stepping every position while tensors share 20 MiB segments, the closed-form
    # churn after them gives the step-by-step replay's figure to the byte...
    monkeypatch.setattr(kv_replay._Replay, "stride", lambda self, positions: 1)
    kv_replay.clear_caches()
    assert kv_replay.kv_cache_replay(*args).grown == exact
    # the segments in use at once (within 0.5 %: the closed form counts each tensor's
    # container as a segment of its own), though the ballooned cache reserves far more
    whole, fast = kv_replay.replay_all(*args), kv_replay.kv_cache_replay(*args)
    assert fast.grown == whole.grown and whole.needed < whole.grown / 3
    assert fast.needed == pytest.approx(whole.needed, rel=0.005)
    # ... and striding through the shared segments (what estimates do) stays within 1 %.
    monkeypatch.undo()
    kv_replay.clear_caches()
    assert abs(kv_replay.kv_cache_replay(*args).grown - exact) <= 0.01 * exact


@pytest.mark.parametrize("cell", CELLS)
def test_a_run_resumed_from_a_kept_replay_reserves_what_a_fresh_replay_does(
    cell: tuple[str, int, int, int],
) -> None:
    from vramtui.predict import kv_replay

    rules, free, first, kv = _growth(*cell)
    lasts = [kv.tokens, kv.tokens // 3, 2 * kv.tokens // 3 + 1, kv.tokens - 1, 2]
    fresh = []
    for tokens in lasts:
        kv_replay.clear_caches()
        found = kv_replay.kv_cache_replay(rules, free, first, replace(kv, tokens=tokens))
        fresh.append(found.grown)
    kv_replay.clear_caches()
    resumed = [
        kv_replay.kv_cache_replay(rules, free, first, replace(kv, tokens=tokens)).grown
        for tokens in lasts
    ]
    assert resumed == fresh
    # the longest run, replayed first, kept its states for the others
    assert kv_replay._CHECKPOINTS
    kv_replay.clear_caches()


def test_a_copied_pool_goes_on_as_the_original_and_apart_from_it() -> None:
    pool = CachingAllocator(RULES, free_blocks=(30 * MiB,))
    a, b, _ = (pool.malloc(size * MiB) for size in (3, 12, 25))
    pool.free(b)
    twin = pool.copy()
    handles = []
    for each in (pool, twin):  # the same requests: the same blocks and figures
        each.free(a)
        handles.append(each.malloc(14 * MiB))
    assert handles[0] == handles[1]
    assert twin.free_large_blocks() == pool.free_large_blocks()
    assert (twin.allocated, twin.reserved) == (pool.allocated, pool.reserved)
    before = pool.free_large_blocks()
    twin.free(handles[1])  # what the copy does leaves the original as it was
    twin.malloc(40 * MiB)
    assert twin.reserved == pool.reserved + 40 * MiB
    assert pool.free_large_blocks() == before and len(pool.segments) + 1 == len(twin.segments)


# A quantized load leaves large free blocks behind (the dequantization's buffers): the
# cache's tensors are carved out of them several to a block, the churn never settles
# into one tensor a block, and every position is replayed from kept states.
QUANT_LOADS = [  # (free blocks after the load, the cache's growth)
    ((1310720,) * 4 + (7536640, 96 * MiB), KvGrowth(6, 2048, 8, 7000)),
    ((40 * MiB, 270 * MiB), KvGrowth(4, 6144, 8, 2500)),
    ((130 * MiB,) * 3, KvGrowth(8, 4096, 1000, 1200)),
]


@pytest.mark.parametrize("load", QUANT_LOADS)
def test_large_free_blocks_of_a_load_replay_as_every_step_does(
    load: tuple[tuple[int, ...], KvGrowth], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.predict import kv_replay

    free, kv = load
    first = (32 * MiB, MiB)
    monkeypatch.setattr(kv_replay._Replay, "stride", lambda self, positions: 1)
    lasts = [kv.tokens, kv.tokens // 3, 2 * kv.tokens // 3 + 1, kv.tokens - 1]
    exact = [kv_replay.replay_all(RULES, free, first, replace(kv, tokens=t)).grown for t in lasts]
    kv_replay.clear_caches()
    resumed = [kv_cache_replay(RULES, free, first, replace(kv, tokens=t)).grown for t in lasts]
    kv_replay.clear_caches()
    assert resumed == exact
