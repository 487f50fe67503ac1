"""A static cache's compiled decode step (predict/compiled.py) and how a run says
which compile it had (the engine's Done.compiled)."""

from __future__ import annotations

import sys
import types
from collections import Counter

import pytest

from vramtui.analysis.breakdown import compiled_as
from vramtui.measure import events as ev
from vramtui.measure.engine.engine_run import compile_outcome
from vramtui.models.opt import opt_model
from vramtui.predict.allocator import MiB, PoolRules
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.compiled import compiled_step
from vramtui.predict.estimator import estimate
from vramtui.predict.tracing.traces import query_row

RULES = PoolRules()
OPT = opt_model("opt-125m")
WORKSPACE = DEFAULT.cublas_workspace_bytes
FLUSH = DEFAULT.l2_flush_bytes


def test_the_pool_holds_the_workspace_the_step_buffers_and_a_small_segment() -> None:
    # torch's memory history on an H200 (llama-3.2-1b, benchmarks/results/static-cache):
    # cached compiles 34 MiB at 28 positions (step buffers all small), 54 MiB at 2008
    # (one layer's K and V repeated for the query heads: 2 x 8.2 MB in a 20 MiB segment)
    short = compiled_step(RULES, WORKSPACE, 300_000, FLUSH, "cached")
    assert short.pool_bytes == short.pool_bytes_max == 34 * MiB and short.flush_bytes == 0
    long = compiled_step(RULES, WORKSPACE, 2 * 8_220_672, FLUSH, "cached")
    assert long.pool_bytes == 54 * MiB
    # K and V past the large-allocation line get segments of their own, rounded to 2 MiB
    wide = compiled_step(RULES, WORKSPACE, 2 * 65 * MiB, FLUSH, "cached")  # 65 -> 66 MiB
    assert wide.pool_bytes == (32 + 66 + 66 + 2) * MiB


def test_a_first_compile_adds_the_flush_buffer_once_or_twice() -> None:
    # first compiles measured 94 MiB (one flush segment) and 122 MiB (two) at 28 positions
    first = compiled_step(RULES, WORKSPACE, 300_000, FLUSH, "first")
    assert first.flush_bytes == FLUSH
    assert first.pool_bytes == 34 * MiB + FLUSH and first.pool_bytes_max == 34 * MiB + 2 * FLUSH
    with pytest.raises(ValueError, match="compile must be one of"):
        compiled_step(RULES, WORKSPACE, 0, FLUSH, "warm")


def test_only_a_static_cache_on_cuda_with_decode_steps_is_compiled() -> None:
    dynamic = estimate(OPT, tokens=200)
    one_token = estimate(OPT, tokens=1, cache="static")
    cpu = estimate(OPT, tokens=200, cache="static", backend="cpu", dtype="float32")
    for est in (dynamic, one_token, cpu):
        assert est.compile is None and est.graph_pool_bytes == est.first_compile_bytes == 0


def test_the_estimate_of_a_compiled_step_first_and_cached() -> None:
    first = estimate(OPT, tokens=200, cache="static")
    cached = estimate(OPT, tokens=200, cache="static", compile="cached")
    eager_peak = max(first._steps.step_peak(t) for t in (0, 1, 199))
    assert first.compile == "first" and cached.compile == "cached"
    # cached: the eager step's peak (one workspace replaces the other); first: + flush
    assert cached.peak_allocated_bytes == max(eager_peak, first._steps.load_peak)
    assert first.peak_allocated_bytes == first._steps.step_peak(1) + FLUSH
    # the pool sits beside the default pool's segments; a first compile may need two
    assert first.peak_reserved_bytes - cached.peak_reserved_bytes == FLUSH
    assert first.required_bytes - first.peak_total_bytes == FLUSH
    assert cached.required_bytes == cached.peak_total_bytes
    # the same run stopped early keeps its compile
    assert cached.for_tokens(50).compile == "cached"


def test_grouped_queries_repeat_k_and_v_for_every_query_head() -> None:
    gqa = {"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 2048}
    assert query_row(gqa, 1, "float16") == 32 * 64 * 2
    assert query_row({**gqa, "head_dim": 128}, 4, "float32") == 4 * 32 * 128 * 4
    assert query_row({"text_config": gqa}, 1, "bfloat16") == 32 * 64 * 2
    assert query_row({**gqa, "num_key_value_heads": 32}, 1, "float16") == 0
    assert query_row({"hidden_size": 64}, 1, "float16") == 0


def _fake_inductor(monkeypatch: pytest.MonkeyPatch, counts: dict[str, int] | None) -> None:
    if counts is None:
        monkeypatch.delitem(sys.modules, "torch._dynamo.utils", raising=False)
        return
    module = types.ModuleType("torch._dynamo.utils")
    module.counters = {"inductor": Counter(counts)} if counts else {}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch._dynamo.utils", module)


@pytest.mark.parametrize(
    ("counts", "outcome"),
    [
        (None, None),  # torch._dynamo never imported
        ({}, None),  # imported, nothing compiled
        ({"fxgraph_cache_miss": 1, "fxgraph_cache_hit": 2}, "first"),
        ({"fxgraph_cache_hit": 3}, "cached"),
        ({"pattern_matcher_count": 5}, "first"),  # inductor's cache turned off
    ],
)
def test_the_engine_tells_a_first_compile_from_a_cached_one(
    monkeypatch: pytest.MonkeyPatch, counts: dict[str, int] | None, outcome: str | None
) -> None:
    _fake_inductor(monkeypatch, counts)
    assert compile_outcome() == outcome


def test_a_session_is_compared_with_the_compile_it_had() -> None:
    from vramtui.measure.session import Session
    from vramtui.runspec import RunSpec

    session = Session(RunSpec(model="opt-125m", tokens=3, cache="static"), t0=0.0)
    assert compiled_as(session.snapshot()) == "first"  # not done: a first compile is the safe side
    done = ev.Done(3, 0.1, 0.1, 0.1, 0.3, 10.0, 10.0, compiled="cached")
    session.apply(done)
    assert compiled_as(session.snapshot()) == "cached"
    wire = ev.decode(ev.encode(done))
    assert isinstance(wire, ev.Done) and wire.compiled == "cached"
