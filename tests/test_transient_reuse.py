"""A step's transient in the allocator replay: the segments the prefill's activations
leave serve the cache's churn that follows, and the blocks a quantized load freed hold
a dequantized weight (predict/kv_replay.py, StepModel.transient_blocks)."""

from __future__ import annotations

from vramtui.models.opt import opt_model
from vramtui.predict.allocator import PoolRules
from vramtui.predict.estimator import estimate
from vramtui.predict.kv_replay import KvGrowth, kv_cache_replay, replay_all
from vramtui.predict.quantized import quant_plan

MiB = 1024**2
RULES = PoolRules()


def test_the_cache_churn_reuses_the_prefill_segments() -> None:
    # 4 layers, 16 MB tensors at the prompt growing past 2 MiB boundaries
    kv = KvGrowth(4, 8 * 1024, 2000, 300)
    prompt_only = kv_cache_replay(RULES, (), (), KvGrowth(4, 8 * 1024, 2000, 1)).grown
    alone = kv_cache_replay(RULES, (), (), kv).grown
    assert alone > prompt_only  # the churn moves the cache to new segments
    prefill = (400 * MiB,)
    with_prefill = kv_cache_replay(RULES, (), (), kv, prefill).grown
    # the churn fits in the prefill's freed segment: nothing beyond it and the prompt
    assert with_prefill == prompt_only + 400 * MiB
    assert with_prefill < alone + 400 * MiB
    assert replay_all(RULES, (), (), kv, prefill).grown == with_prefill


def test_a_dequantized_weight_sits_in_the_blocks_its_load_freed() -> None:
    opt = opt_model("opt-1.3b")
    est = estimate(opt, quant="fp8")
    steps = est._steps
    dequant = quant_plan(opt, "fp8", False, 2).dequant_tensors(est.batch * est.prompt_tokens)
    blocks = steps.transient_blocks(est.transient_bytes, prefill=True)
    assert blocks.replayed[: len(dequant)] == dequant
    # float8's conversions left float32-sized holes: the step's copies fit in them
    assert sum(steps.load.free_large) >= sum(dequant)
    assert est.peak_reserved_bytes < steps.load.reserved + sum(dequant)


def test_a_decode_transient_comes_back_beside_the_longest_cache() -> None:
    kv = KvGrowth(4, 8 * 1024, 2000, 300)
    alone = kv_cache_replay(RULES, (), (), kv).grown
    # no block the churn left holds it: a decode step's transient needs its own segment,
    # which the churn never reused
    with_decode = kv_cache_replay(RULES, (), (), kv, (), (400 * MiB,)).grown
    assert with_decode == alone + 400 * MiB
    assert replay_all(RULES, (), (), kv, (), (400 * MiB,)).grown == with_decode
    # a small one fits the blocks the churn left behind
    assert kv_cache_replay(RULES, (), (), kv, (), (12 * MiB,)).grown == alone
