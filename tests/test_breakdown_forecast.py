"""Measured breakdown, predicted-vs-measured rows and the OOM forecast, on synthetic sessions."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from vramtui.analysis.breakdown import compare, estimate_for_session, measured_breakdown
from vramtui.analysis.live_forecast import forecast_oom
from vramtui.measure import events as ev
from vramtui.measure.session import NvmlSample, Session, SessionView
from vramtui.models.opt import opt_model
from vramtui.predict.estimator import Estimate, estimate
from vramtui.predict.fit_forecast import FitCheck, fit_check, growth_per_token, max_tokens_that_fit
from vramtui.report.estimate_text import fit_text
from vramtui.runspec import RunSpec
from vramtui.runspec.program_spec import saved_spec

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def start_screen_fit(e: Estimate, total: int, used: int) -> tuple[bool, str]:
    check: FitCheck = fit_check(e, total - used)
    return check.fits, fit_text(check)


MB = 10**6
GB = 10**9
WEIGHTS = 250 * MB
CONTEXT = 640 * MB


def _session(
    n: int,
    *,
    alloc: Callable[[int], int],
    peak: Callable[[int], int],
    kv: Callable[[int], int],
    reserved: Callable[[int], int] | None,
    nvml: Callable[[int], int] | None = None,
    device_used: Callable[[int], int] | None = None,
    total: int = 80 * GB,
    backend: str = "cuda",
    tokens: int = 300,
    positions: int = 2048,
    failed_at: int | None = None,
) -> SessionView:
    s = Session(
        RunSpec(
            model="opt-125m",
            source="architecture",
            tokens=tokens,
            batch=1,
            prompt_tokens=8,
            attn="sdpa",
            dtype=None,
        ),
        t0=0.0,
    )
    source = "torch.cuda" if backend == "cuda" else "process RSS (psutil)"
    s.apply(
        ev.Hello(
            7,
            f"{backend}:0" if backend == "cuda" else "cpu",
            backend,
            "Test GPU",
            None,
            total,
            source,
            {},
        )
    )
    s.apply(ev.Phase("load", 0.1))
    s.apply(
        ev.Sample(None, 0.2, "load", WEIGHTS, WEIGHTS + 2 * MB if reserved else None, WEIGHTS, None)
    )
    s.apply(ev.Loaded(WEIGHTS, WEIGHTS // 2, "float16", positions, 12, 768, 12, 64, 8, 0.1, "opt"))
    s.apply(ev.Phase("prefill", 0.3))
    for i in range(n):
        t = 1.0 + i * 0.01
        if nvml is not None:
            used = device_used(i) if device_used else None
            s.add_nvml(NvmlSample(t - 0.005, nvml(i), used, total))
        s.apply(
            ev.Sample(i, t, "decode", alloc(i), reserved(i) if reserved else None, peak(i), kv(i))
        )
        if i == 0:
            s.apply(ev.Phase("decode", t))
    if failed_at is not None:
        s.apply(ev.Failed("oom", "CUDA out of memory", "decode", failed_at))
    else:
        s.apply(ev.Done(n, 0.1, 0.1, 0.5, 0.6, n / 0.6, n / 0.5))
    return s.snapshot()


def _linear(n: int = 20) -> SessionView:
    """KV grows 36 kB a token; other allocations 40 MB; transient 1 MB, 30 MB at prefill."""
    return _session(
        n,
        alloc=lambda i: WEIGHTS + 40 * MB + 36_000 * (8 + i),
        peak=lambda i: WEIGHTS + 40 * MB + 36_000 * (8 + i) + (30 * MB if i == 0 else MB),
        kv=lambda i: 36_000 * (8 + i),
        reserved=lambda i: WEIGHTS + 80 * MB + 36_000 * i,
        nvml=lambda i: CONTEXT + WEIGHTS + 80 * MB + 36_000 * i,
        device_used=lambda i: 5 * GB,
    )


def test_latest_breakdown_stacks_up_to_the_nvml_figure() -> None:
    s = _linear()
    b = measured_breakdown(s, "latest")
    assert b is not None and b.token == 19 and b.phase == "decode"
    assert b.weights_bytes == WEIGHTS
    assert b.kv_cache_bytes == 36_000 * 27
    assert b.other_allocated_bytes == 40 * MB
    assert b.transient_bytes == MB
    # reserved - the step's peak: 80 MB - 40 MB - KV - 1 MB, here with KV = 27 x 36 kB
    assert b.slack_bytes == (WEIGHTS + 80 * MB + 36_000 * 19) - (
        WEIGHTS + 40 * MB + 36_000 * 27 + MB
    )
    assert b.context_bytes == CONTEXT
    assert b.total_bytes == CONTEXT + WEIGHTS + 80 * MB + 36_000 * 19
    assert b.total_source == "NVML process"
    assert [label for label, _ in b.components()][0] == "weights"


def test_peak_breakdown_is_the_step_with_the_highest_peak() -> None:
    b = measured_breakdown(_linear(), "peak")
    assert b is not None and b.token == 0 and b.phase == "prefill"
    assert b.transient_bytes == 30 * MB
    assert b.kv_cache_bytes == 36_000 * 8


def test_cpu_breakdown_counts_tensors_not_rss_as_weights() -> None:
    rss = 700 * MB  # interpreter and libraries: not weights
    s = _session(
        5,
        alloc=lambda i: rss + i * MB,
        peak=lambda i: rss + i * MB + 3 * MB,
        kv=lambda i: 1000 * (8 + i),
        reserved=None,
        backend="cpu",
    )
    b = measured_breakdown(s, "latest")
    assert b is not None
    assert b.weights_bytes == WEIGHTS  # Loaded.weights_bytes, not the load sample's RSS
    assert b.slack_bytes is None and b.context_bytes is None
    assert b.transient_bytes == 3 * MB
    assert b.total_bytes == rss + 4 * MB + 3 * MB
    assert b.total_source == "process RSS peak"


def test_no_breakdown_before_any_sample() -> None:
    assert measured_breakdown(Session(RunSpec(model="x")).snapshot(), "latest") is None
    with pytest.raises(ValueError):
        measured_breakdown(_linear(), "middle")


def test_estimate_for_session_uses_the_run_shape() -> None:
    s = _linear()
    e = estimate_for_session(s)
    assert e is not None
    assert (e.tokens, e.prompt_tokens, e.dtype, e.backend) == (300, 8, "float16", "cuda")
    assert estimate_for_session(Session(RunSpec(model="nope")).snapshot()) is None


# ---- out-of-memory forecast --------------------------------------------------------


def _growing(
    n: int,
    per_token: float,
    headroom: int,
    noise: Callable[[int], int] = lambda i: 0,
    positions: int = 2048,
    tokens: int = 300,
) -> SessionView:
    total = 80 * GB
    base = 10 * GB

    def used(i: int) -> int:  # the device's used memory follows the run
        return int(total - headroom - per_token * (n - 1 - i))

    return _session(
        n,
        alloc=lambda i: int(base + per_token * i),
        peak=lambda i: int(base + per_token * i + MB + noise(i)) + (500 * MB if i == 0 else 0),
        kv=lambda i: int(per_token * (8 + i)),
        reserved=lambda i: int(base + per_token * i + 4 * MB),
        nvml=lambda i: int(base + per_token * i + CONTEXT),
        device_used=used,
        total=total,
        positions=positions,
        tokens=tokens,
    )


def test_linear_growth_runs_out_after_headroom_over_growth_tokens() -> None:
    f = forecast_oom(_growing(51, 1 * MB, 100 * MB))
    assert f is not None
    assert f.current_token == 50
    assert f.bytes_per_token == pytest.approx(1 * MB, rel=1e-6)
    assert f.headroom_bytes == 100 * MB + 4 * MB  # free, and the 4 MB its allocator caches
    assert f.token is not None and abs(f.token - 154) <= 1
    assert not f.fits  # the run asked for 300 tokens


def test_a_run_that_ends_before_the_forecast_fits() -> None:
    f = forecast_oom(_growing(51, 1 * MB, 100 * MB, tokens=120))
    assert f is not None and f.token is not None and f.fits


def test_forecast_ignores_spikes_and_steps() -> None:
    rng = random.Random(4)

    def noise(i: int) -> int:
        spike = 80 * MB if i % 9 == 0 else 0
        return spike + rng.randrange(0, 2 * MB) + (i // 16) * 2 * MB  # segment-like steps

    f = forecast_oom(_growing(120, 1 * MB, 300 * MB, noise=noise))
    assert f is not None and f.bytes_per_token == pytest.approx(1.125 * MB, rel=0.08)
    assert f.token is not None and abs(f.token - (119 + 300 / 1.125)) <= 25


def test_no_growth_or_growth_beyond_the_positions_fits() -> None:
    flat = forecast_oom(_growing(40, 0, 100 * MB))
    assert flat is not None and flat.token is None and flat.fits
    # 10 kB a token and 100 MB free: 10,000 tokens, beyond the 2048 positions.
    slow = forecast_oom(_growing(40, 10_000, 100 * MB))
    assert slow is not None and slow.token is None and slow.fits


def test_forecast_needs_two_decode_steps_and_a_total() -> None:
    assert forecast_oom(_growing(2, MB, 100 * MB)) is None  # the prefill and one decode step
    s = _session(
        10,
        alloc=lambda i: GB + i * MB,
        peak=lambda i: GB + i * MB,
        kv=lambda i: i,
        reserved=lambda i: GB + i * MB + 10 * MB,
        total=0,
    )
    assert forecast_oom(s) is None
    f = forecast_oom(s, device_total=GB + 109 * MB)  # no NVML: total less what the run reserves
    # no NVML: the total less what the run reserves, plus its 10 MB of cache
    assert f is not None and f.headroom_bytes == 100 * MB and f.token == 9 + 101


def test_growth_per_token_is_exact_on_a_line() -> None:
    assert growth_per_token([(t, 7 * t + 3) for t in range(1, 30)]) == 7
    assert growth_per_token([(1, 5)]) is None


# ---- the start screen ---------------------------------------------------------------


def test_start_screen_says_whether_the_run_fits() -> None:
    model = opt_model("opt-1.3b")
    e = estimate(model, tokens=1000, batch=32)
    ok, message = start_screen_fit(e, 80 * GB, 1 * GB)
    assert ok and message.startswith("fits")
    used = 80 * GB - e.required_bytes + 1
    ok, message = start_screen_fit(e, 80 * GB, used)
    most = max_tokens_that_fit(model, e.required_bytes - 1, batch=32)
    assert not ok and 0 < most < 1000
    assert message.startswith("won't fit") and f"at most {most} new tokens fit" in message
    ok, message = start_screen_fit(e, 2 * GB, 0)
    assert not ok and "not even the weights" in message


def test_growth_in_rare_large_steps_is_read_over_the_whole_run() -> None:
    # A real opt-1.3b decode on the H200: the step peak is flat for ~100 tokens,
    # then jumps ~20 MB (a new allocator block); ~200 kB a token on average.
    # Halfway through a flat stretch the recent tokens alone show no growth.
    step_tokens, step_bytes = 100, 20 * MB

    def staircase(i: int) -> int:
        return GB + (i // step_tokens) * step_bytes

    n = 1051  # 50 tokens into a flat stretch
    s = _session(
        n,
        alloc=staircase,
        peak=staircase,
        kv=lambda i: i * 200_000,
        reserved=lambda i: staircase(i) + 50 * MB,
        nvml=lambda i: staircase(i) + 50 * MB + CONTEXT,
        device_used=lambda i: staircase(i) + 50 * MB + CONTEXT,
        total=staircase(n - 1) + 50 * MB + CONTEXT + 100 * MB,  # 100 MB free
        positions=100_000,
        tokens=90_000,
    )
    f = forecast_oom(s)
    assert f is not None and f.headroom_bytes == 150 * MB  # with the 50 MB cached
    assert f.bytes_per_token == pytest.approx(step_bytes / step_tokens, rel=0.15)
    # 150 MB at ~200 kB a token: ~750 tokens from here (a 64-token window said never)
    assert f.token is not None and abs(f.token - (n - 1 + 750)) <= 100 and not f.fits


def test_a_cache_that_fills_the_gpu_is_room_to_grow_not_an_oom() -> None:
    # opt-1.3b at batch 8 on the H200: 5.9 GB allocated, the allocator's cache has taken
    # the GPU (it frees it before it runs out); the run completes.
    total, n = 150 * GB, 1500
    s = _session(
        n,
        alloc=lambda i: 3 * GB + i * 2 * MB,
        peak=lambda i: 3 * GB + i * 2 * MB + MB,
        kv=lambda i: i * 2 * MB,
        reserved=lambda i: 3 * GB + i * 97 * MB,  # ballooning, up to ~148 GB
        nvml=lambda i: 3 * GB + i * 97 * MB + CONTEXT,
        device_used=lambda i: 3 * GB + i * 97 * MB + CONTEXT,
        total=total,
        tokens=2000,
    )
    f = forecast_oom(s)
    assert f is not None and f.headroom_bytes > 140 * GB
    assert f.fits  # without the cache counted the GPU is full: an OOM "now"


def test_each_component_is_measured_as_itself_on_a_real_h200_run() -> None:
    """opt-125m, 8 + 2000 tokens, measured on the H200 (calibration file): weights are the
    engine's tensor bytes, transient and slack what the allocator's own figures say."""
    data = json.loads((RESULTS / "calibrate" / "b1-long.json").read_text())
    cell = next(c for c in data["cells"] if c["spec"]["model"] == "opt-125m")
    s = Session(saved_spec(cell["spec"]), t0=0.0)
    s.apply(ev.Hello(7, "cuda:0", "cuda", "NVIDIA H200", None, 150 * GB, "torch.cuda", {}))
    after = cell["after_load"]
    s.apply(ev.Sample(None, 0.2, "load", after["allocated"], after["reserved"], None, None))
    loaded = ev.Loaded(
        cell["weights_bytes"], cell["params"], "float16", 2048, 12, 768, 12, 64, 8, 1.0
    )
    s.apply(loaded)
    for row in cell["series"]:
        step = ev.Sample(row["token"], 1.0 + row["token"] * 0.01, "decode", row["allocated"],
                         row["reserved"], row["step_peak"], row["kv"])  # fmt: skip
        s.apply(step)
    e = estimate(opt_model("opt-125m"), tokens=cell["spec"]["tokens"])
    rows = {r.component: r for r in compare(e, s.snapshot())}
    assert rows["weights"].measured == 125_239_296 * 2 and rows["weights"].error_percent == 0
    for component in ("KV cache (end)", "allocator slack"):
        assert abs(rows[component].error_percent) < 1.0, rows[component]
    # The largest step transient (token 1886 here) holds a block the allocator did not
    # split (a remainder under 1 MiB stays with the block): the step model, which
    # counts tensors, is under it by less than that.
    transient = rows["transient (largest)"]
    assert transient.measured is not None and transient.predicted is not None
    assert 0 <= transient.measured - transient.predicted < 1 << 20
