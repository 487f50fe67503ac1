"""Predicted against measured, component by component (report.breakdown.compare):
finished runs, runs that stopped early or ran out of memory, and a ballooning cache."""

from __future__ import annotations

import pytest

from vramtui.analysis.breakdown import compare
from vramtui.measure import events as ev
from vramtui.measure.session import NvmlSample, Session, SessionView
from vramtui.models.opt import opt_model
from vramtui.predict.estimator import Estimate, estimate
from vramtui.runspec import RunSpec

GB = 10**9


def _measured_like(
    e: Estimate, n: int, weights_scale: float = 1.0, failed_at: int | None = None
) -> Session:
    """A session that measured exactly what `e` predicts (weights optionally off)."""
    ws = e.weights_bytes * weights_scale - e.weights_bytes
    s = Session(
        RunSpec(
            model="opt-125m",
            source="architecture",
            tokens=e.tokens,
            batch=1,
            prompt_tokens=e.prompt_tokens,
            attn=e.attn,
            dtype=e.dtype,
        ),
        t0=0.0,
    )
    s.apply(ev.Hello(7, "cuda:0", "cuda", "Test GPU", None, 80 * GB, "torch.cuda", {}))
    s.apply(ev.Sample(None, 0.2, "load", int(e.weights_bytes + ws), None, e.load_peak_bytes, None))
    s.apply(
        ev.Loaded(
            int(e.weights_bytes * weights_scale),
            e.weights_bytes // 2,
            e.dtype,
            2048,
            12,
            768,
            12,
            64,
            e.prompt_tokens,
            0.1,
            "opt",
        )
    )
    s.apply(ev.Phase("prefill", 0.3))
    done = e.for_tokens(max(n, 1))
    for i in range(n):
        t = 1.0 + i * 0.01
        s.add_nvml(NvmlSample(t - 0.005, done.peak_total_bytes, None, 80 * GB))
        s.apply(
            ev.Sample(
                i,
                t,
                "decode",
                e.allocated_at(i),
                done.peak_reserved_bytes,
                e.step_peak_at(i),
                e.kv_at(i),
            )
        )
    if failed_at is None:
        s.apply(ev.Done(n, 0.1, 0.1, 0.5, 0.6, 10.0, 10.0))
    else:
        s.apply(ev.Failed("oom", "out of memory", "decode", failed_at))
    return s


def test_compare_reports_zero_error_where_measured_equals_predicted() -> None:
    e = estimate(opt_model("opt-125m"), tokens=40)
    rows = {r.component: r for r in compare(e, _view_like(e, 40))}
    for name in (
        "weights",
        "KV cache (end)",
        "transient (largest)",
        "peak allocated",
        "peak reserved",
        "peak total (NVML)",
        "allocator slack",
        "context & other",
    ):
        assert rows[name].measured is not None, name
        assert rows[name].error_percent == 0.0, name
    assert rows["KV cache (end)"].measured == e.kv_cache_bytes


def test_compare_error_percent_is_relative_to_the_measurement() -> None:
    e = estimate(opt_model("opt-125m"), tokens=40)
    rows = {r.component: r for r in compare(e, _view_like(e, 40, weights_scale=1.25))}
    assert rows["weights"].error_percent == pytest.approx(-20.0)


def test_compare_a_run_that_stopped_early_with_its_own_tokens() -> None:
    e = estimate(opt_model("opt-125m"), tokens=400)
    rows = {r.component: r for r in compare(e, _view_like(e, 150, failed_at=150))}
    assert rows["KV cache (end)"].predicted == e.kv_at(149)
    assert rows["KV cache (end)"].error_percent == 0.0
    assert rows["peak allocated"].error_percent == 0.0


def test_an_out_of_memory_is_compared_at_the_moments_both_sources_saw() -> None:
    # NVML sees the failing step's spike; the allocator never sampled that step
    e = estimate(opt_model("opt-125m"), tokens=400)
    s = _measured_like(e, 150, failed_at=150)
    s.add_nvml(NvmlSample(3.0, 80 * GB, None, 80 * GB))
    rows = {r.component: r for r in compare(e, s.snapshot())}
    assert rows["peak total (NVML)"].error_percent == 0.0
    assert rows["context & other"].error_percent == 0.0


def test_a_run_that_failed_before_its_first_token_compares_its_weights_alone() -> None:
    e = estimate(opt_model("opt-125m"), tokens=400)
    s = _measured_like(e, 0, failed_at=0)
    s.add_nvml(NvmlSample(0.35, 80 * GB, None, 80 * GB))  # the prefill's out-of-memory
    rows = [r for r in compare(e, s.snapshot()) if r.measured is not None]
    assert [r.component for r in rows] == ["weights"]


def test_a_ballooning_cache_is_predicted_at_most_the_device() -> None:
    # opt-1.3b at batch 4096: the cache's segments would grow past any device; the run
    # ran out on an 80 GB one. Reserved and total are compared capped, as estimate says.
    e = estimate(opt_model("opt-1.3b"), tokens=200, batch=4096)
    assert e.cache_balloons and e.peak_total_bytes > 80 * GB
    s = _measured_like(e, 20, failed_at=20)
    rows = {r.component: r for r in compare(e, s.snapshot())}
    assert rows["peak total (NVML)"].predicted == 80 * GB
    reserved = rows["peak reserved"].predicted
    assert reserved == 80 * GB - e.context_bytes
    assert rows["allocator slack"].predicted == reserved - e.for_tokens(20).peak_allocated_bytes


def _view_like(
    e: Estimate, n: int, weights_scale: float = 1.0, failed_at: int | None = None
) -> SessionView:
    """What `_measured_like` records, as its readers read it."""
    return _measured_like(e, n, weights_scale, failed_at).snapshot()
