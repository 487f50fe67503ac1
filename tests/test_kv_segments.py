"""The replay of the KV cache's churn on the caching allocator's large-pool rules."""

from __future__ import annotations

from vramtui.estimator import DEFAULT
from vramtui.kv_segments import _LargePool, kv_cache_reserve

MiB = 2**20
RULES = DEFAULT.pool_rules()


def test_large_requests_get_2_mib_rounded_segments_and_small_ones_share_20_mib() -> None:
    pool = _LargePool(RULES, ())
    a = pool.malloc(3 * MiB)  # under 10 MiB: a 20 MiB segment, the rest split off
    b = pool.malloc(3 * MiB)  # fits the rest of the same segment
    assert pool.reserved == 20 * MiB and a[0] == b[0]
    pool.malloc(11 * MiB)  # best fit: the 14 MiB left of that segment
    assert pool.reserved == 20 * MiB
    pool.malloc(15 * MiB + 1)  # nothing that large is free: a segment rounded up to 16 MiB
    assert pool.reserved == 36 * MiB


def test_a_freed_segment_serves_no_larger_request() -> None:
    pool = _LargePool(RULES, ())
    old = pool.malloc(12 * MiB)
    pool.free_block(old)
    again = pool.malloc(12 * MiB)  # reused: nothing new
    assert pool.reserved == 12 * MiB and again == old
    pool.free_block(again)
    pool.malloc(12 * MiB + 512)  # too big for the cached 12 MiB: a new 14 MiB segment
    assert pool.reserved == 26 * MiB


def test_freed_neighbours_merge_into_one_block() -> None:
    pool = _LargePool(RULES, ())
    a, b = pool.malloc(4 * MiB), pool.malloc(4 * MiB)
    pool.free_block(a)
    pool.free_block(b)
    assert pool.free == [(20 * MiB, a[0], 0)]  # the whole segment, free again


def test_growth_past_the_shared_segments_leaves_a_trail_and_small_growth_none() -> None:
    # one layer, K and V of 64 kB a position, 320 -> 400 positions: 20 -> 25 MiB
    grown = kv_cache_reserve(RULES, (), (), 1, 64 * 1024, 320, 81)
    # every 2 MiB step leaves the two old segments cached: 20+22+24 MiB (x2) + 26 (x2)
    # live, plus one spare of the size in use
    assert grown >= 2 * (20 + 22 + 24 + 26) * MiB
    small = kv_cache_reserve(RULES, (), (), 1, 256, 8, 2000)  # at most 1 MiB: small pool
    assert small == 0
