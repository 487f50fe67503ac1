"""The estimator: exact arithmetic, the engine's measured figures, CPU allocator traces."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import PUBLISHED_OPT, TINY_CONFIG, record, tiny_spec

from vramtui.errors import UsageError
from vramtui.measure.session import SessionView
from vramtui.models.opt import model_info_for_config, opt_model
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.estimator import estimate
from vramtui.predict.fit_forecast import max_tokens_that_fit
from vramtui.runspec import RunSpec

BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


@pytest.mark.parametrize("dtype", list(BYTES))
@pytest.mark.parametrize("name", list(PUBLISHED_OPT))
def test_weights_and_kv_cache_match_the_design_table(name: str, dtype: str) -> None:
    params, kv_fp16 = PUBLISHED_OPT[name]
    kv_token = kv_fp16 // 2 * BYTES[dtype]
    e = estimate(opt_model(name), prompt_tokens=8, tokens=200, dtype=dtype)
    assert e.weights_bytes == params * BYTES[dtype]
    # After the last step the cache holds the prompt and every new token but the last.
    assert e.kv_cache_bytes == kv_token * (8 + 200 - 1)
    wide = estimate(opt_model(name), prompt_tokens=100, tokens=50, batch=3, dtype=dtype)
    assert wide.kv_cache_bytes == kv_token * 149 * 3
    assert wide.kv_at(0) == kv_token * 100 * 3
    assert wide.kv_at(49) == wide.kv_cache_bytes


@pytest.mark.parametrize("name", list(PUBLISHED_OPT))
def test_parameter_tensors_add_up_to_the_design_table(name: str) -> None:
    assert sum(n for _, n in opt_model(name).checkpoint_tensors()) == PUBLISHED_OPT[name][0]


def test_accounting_identities_hold() -> None:
    e = estimate(opt_model("opt-1.3b"), prompt_tokens=64, tokens=300, batch=4)
    assert e.peak_reserved_bytes == e.peak_allocated_bytes + e.slack_bytes
    assert e.peak_total_bytes == e.peak_reserved_bytes + e.context_bytes
    assert e.slack_bytes >= 0 and e.transient_bytes > 0
    assert e.peak_allocated_bytes >= e.weights_bytes + e.kv_cache_bytes + e.transient_bytes
    steps = max(e.step_peak_at(t) for t in range(e.tokens))
    assert e.peak_allocated_bytes == max(steps, e.load_peak_bytes)
    # The load's peak: the loader's warm-up tensor, the checkpoint's size (a tied
    # lm_head is never allocated), a few hundred kB over the weights' blocks.
    assert e.weights_bytes <= e.load_peak_bytes < e.weights_bytes + 2 * 1024**2
    assert e.transient_bytes == max(e.step_peak_at(t) - e.allocated_at(t) for t in range(300))
    for t in (0, 1, 150, 299):
        assert e.step_peak_at(t) > e.allocated_at(t) >= e.weights_bytes + e.kv_at(t)


def test_eager_prefill_is_quadratic_in_the_prompt_and_sdpa_is_not() -> None:
    model = opt_model("opt-1.3b")

    def transient(attn: str, prompt: int) -> int:
        return estimate(model, prompt_tokens=prompt, tokens=4, attn=attn).transient_bytes

    eager = transient("eager", 1024) / transient("eager", 512)
    sdpa = transient("sdpa", 1024) / transient("sdpa", 512)
    assert eager > 3.0  # the B x heads x prompt x prompt score matrices dominate
    assert 1.8 < sdpa < 2.2  # activations only: linear in the prompt
    assert transient("eager", 1024) > 2 * transient("sdpa", 1024)


def test_cpu_backend_has_no_context_and_reserves_what_it_allocates() -> None:
    e = estimate(opt_model("opt-125m"), backend="cpu", dtype="float32")
    assert e.context_bytes == 0 and e.slack_bytes == 0
    assert e.peak_total_bytes == e.peak_reserved_bytes == e.peak_allocated_bytes


def test_calibration_constants_move_the_figures_they_name() -> None:
    model = opt_model("opt-350m")
    base = estimate(model)
    more_context = estimate(model, calibration=replace(DEFAULT, cuda_context_bytes=10**9))
    delta = 10**9 - DEFAULT.cuda_context_bytes
    assert more_context.peak_total_bytes - base.peak_total_bytes == delta
    no_workspace = estimate(model, calibration=replace(DEFAULT, cublas_workspace_bytes=0))
    assert base.allocated_at(5) - no_workspace.allocated_at(5) == DEFAULT.cublas_workspace_bytes
    assert base.weights_bytes == no_workspace.weights_bytes


def test_curve_is_downsampled_and_keeps_both_ends() -> None:
    e = estimate(opt_model("opt-125m"), tokens=1000)
    curve = e.curve(50)
    assert len(curve) <= 50
    assert curve[0] == (0, e.step_peak_at(0)) and curve[-1] == (999, e.step_peak_at(999))
    decode = [v for t, v in curve if t >= 1]
    assert decode == sorted(decode)
    assert len(estimate(opt_model("opt-125m"), tokens=20).curve(200)) == 20


def test_tokens_outside_the_run_are_refused() -> None:
    e = estimate(opt_model("opt-125m"), tokens=10)
    with pytest.raises(ValueError):
        e.allocated_at(10)
    with pytest.raises(ValueError):
        e.step_peak_at(-1)
    with pytest.raises(UsageError):
        estimate(opt_model("opt-125m"), prompt_tokens=8, tokens=2041)


def test_max_tokens_that_fit_brackets_the_memory() -> None:
    model = opt_model("opt-1.3b")
    kw = dict(prompt_tokens=16, batch=64)
    answers = []
    for memory in (3e9, 5e9, 8e9, 12e9, 20e9, 40e9):
        n = max_tokens_that_fit(model, int(memory), **kw)  # type: ignore[arg-type]
        answers.append(n)
        if 0 < n < model.positions - 16:
            assert estimate(model, tokens=n, **kw).required_bytes <= memory  # type: ignore[arg-type]
            assert estimate(model, tokens=n + 1, **kw).required_bytes > memory  # type: ignore[arg-type]
    assert answers == sorted(answers) and len(set(answers)) > 3
    assert max_tokens_that_fit(model, 10**9) == 0  # 2.6 GB of weights
    assert max_tokens_that_fit(model, 10**13, prompt_tokens=48) == model.positions - 48


def test_model_info_for_config_reads_opt_configs() -> None:
    opt350 = {
        "model_type": "opt",
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "ffn_dim": 4096,
        "vocab_size": 50272,
        "max_position_embeddings": 2048,
        "word_embed_proj_dim": 512,
        "do_layer_norm_before": False,
    }
    info = model_info_for_config(opt350)
    assert info is not None and info.params == PUBLISHED_OPT["opt-350m"][0]
    # Keys left out take OPTConfig's defaults: those of opt-125m.
    assert model_info_for_config({"model_type": "opt"}).params == PUBLISHED_OPT["opt-125m"][0]  # type: ignore[union-attr]
    assert model_info_for_config({"model_type": "gpt2", "n_embd": 768}) is None
    assert model_info_for_config({"model_type": "opt", "enable_bias": False}) is None


# ---- against the engine on the CPU -------------------------------------------------


def _tiny_estimate(session: SessionView):  # type: ignore[no-untyped-def]
    info = model_info_for_config(json.loads(TINY_CONFIG.read_text()))
    assert info is not None and session.loaded is not None
    assert isinstance(session.spec, RunSpec)
    return estimate(
        info,
        prompt_tokens=session.loaded.prompt_tokens,
        tokens=session.spec.tokens,
        batch=session.spec.batch,
        dtype=session.loaded.dtype,
        backend="cpu",
    )


def test_estimate_matches_the_engine_weights_and_kv(tiny_session: SessionView) -> None:
    e = _tiny_estimate(tiny_session)
    assert tiny_session.loaded is not None
    assert e.weights_bytes == tiny_session.loaded.weights_bytes
    samples = tiny_session.token_samples
    assert [e.kv_at(s.token) for s in samples] == [s.kv_bytes for s in samples]  # type: ignore[arg-type]
    assert e.kv_cache_bytes == samples[-1].kv_bytes


@pytest.mark.engine
def test_estimate_matches_the_engine_with_batch_prompt_and_half_precision() -> None:
    session = record(tiny_spec(tokens=6, batch=3, prompt_tokens=5, dtype="bfloat16"))
    assert session.status == "completed"
    e = _tiny_estimate(session)
    assert session.loaded is not None and session.loaded.dtype == "bfloat16"
    assert e.weights_bytes == session.loaded.weights_bytes
    assert e.kv_cache_bytes == session.token_samples[-1].kv_bytes
    assert e.kv_at(0) == session.token_samples[0].kv_bytes


# ---- against the CPU allocator, traced step by step ------------------------------

TRACE_CONFIG = {
    "model_type": "opt",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "ffn_dim": 256,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
    "word_embed_proj_dim": 64,
    "do_layer_norm_before": True,
    "pad_token_id": 1,
    "bos_token_id": 2,
    "eos_token_id": 2,
}


def _trace(
    config: dict, prompt: int, tokens: int, batch: int, attn: str
) -> list[tuple[int, int, int]]:
    """(token, allocated after its step, peak during it), above what was allocated before
    generate: the engine's generate call, with the CPU allocator traced by the profiler."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.profiler import ProfilerActivity, profile, record_function

    try:
        from torch._C._profiler import _EventType
    except ImportError:  # pragma: no cover - a torch without the event tree
        pytest.skip("this torch has no profiler event tree")
    values = {k: v for k, v in config.items() if k != "model_type"}
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.OPTConfig(**values), dtype=torch.float32, attn_implementation=attn
    ).eval()
    model.tie_weights()
    ids = torch.randint(4, config["vocab_size"], (batch, prompt))
    mask = torch.ones_like(ids)

    class Mark(transformers.LogitsProcessor):
        token = 0

        def __call__(self, input_ids, scores):  # type: ignore[no-untyped-def]
            with record_function(f"vramtui-step-{self.token}"):
                pass
            self.token += 1
            return scores

    with (
        torch.inference_mode(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=1,
            logits_processor=transformers.LogitsProcessorList([Mark()]),
        )
    events: list[tuple[int, int, int]] = []

    def walk(nodes) -> None:  # type: ignore[no-untyped-def]
        for node in nodes:
            if node.tag == _EventType.Allocation:
                events.append((node.start_time_ns, 0, node.extra_fields.total_allocated))
            elif node.name.startswith("vramtui-step-"):
                events.append((node.start_time_ns, 1, int(node.name.rsplit("-", 1)[1])))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    events.sort()
    out, current, peak = [], 0, 0
    for _, kind, value in events:
        if kind == 0:
            current = value
            peak = max(peak, current)
        else:
            out.append((value, current, peak))
            peak = current
    return out


@pytest.mark.parametrize(
    "prompt, batch, attn", [(8, 1, "sdpa"), (96, 2, "sdpa"), (96, 2, "eager"), (40, 3, "eager")]
)
@pytest.mark.slow
def test_every_step_matches_the_cpu_allocator_trace(prompt: int, batch: int, attn: str) -> None:
    tokens = 12
    info = model_info_for_config(TRACE_CONFIG)
    assert info is not None
    e = estimate(
        info,
        prompt_tokens=prompt,
        tokens=tokens,
        batch=batch,
        dtype="float32",
        attn=attn,
        backend="cpu",
    )
    # Allocated before the trace began: the weights and the prompt's ids and mask (int64).
    before = e.weights_bytes + 2 * batch * prompt * 8
    steps = _trace(TRACE_CONFIG, prompt, tokens, batch, attn)
    assert [t for t, _, _ in steps] == list(range(tokens))
    for token, allocated, peak in steps:
        assert e.allocated_at(token) - before == pytest.approx(allocated, rel=0.01, abs=256)
        assert e.step_peak_at(token) - before == pytest.approx(peak, rel=0.01, abs=256)


def test_cache_balloons_only_when_the_kv_tensors_grow_past_the_shared_segments() -> None:
    from vramtui.predict.estimator import Estimate
    from vramtui.report.estimate_text import fragmentation_warning
    from vramtui.runspec import expandable_segments

    def e(model: str, prompt: int, tokens: int, batch: int, **kw: object) -> Estimate:
        return estimate(opt_model(model), prompt_tokens=prompt, tokens=tokens, batch=batch, **kw)

    # one layer's K at the end: B x positions x hidden x 2 bytes, against 20 MiB + 2 MiB
    assert e("opt-125m", 8, 2000, 8).kv_layer_tensor_bytes(1999) == 8 * 2007 * 768 * 2
    assert e("opt-125m", 8, 2000, 8).cache_balloons  # 24.7 MB at the end
    assert not e("opt-6.7b", 8, 2000, 1).cache_balloons  # 16.4 MB
    assert not e("opt-6.7b", 2000, 1, 8).cache_balloons  # a long prompt, one new token
    assert not e("opt-1.3b", 8, 2000, 8, backend="cpu").cache_balloons  # no caching allocator
    assert not e("opt-1.3b", 8, 2000, 8, expandable_segments=True).cache_balloons

    big = e("opt-1.3b", 8, 2000, 8)
    plain = e("opt-1.3b", 8, 2000, 8, expandable_segments=True)
    # the balloon is in reserved and the process total, not in what the run needs
    assert big.peak_allocated_bytes == plain.peak_allocated_bytes
    assert big.peak_reserved_bytes > 5 * plain.peak_reserved_bytes
    # needed: the segments in use at once (the cached ones are given back before an
    # out-of-memory), within what expandable segments would reserve
    assert plain.required_bytes == plain.peak_total_bytes
    assert big.peak_allocated_bytes + big.context_bytes < big.required_bytes
    assert big.required_bytes <= plain.required_bytes
    assert big.required_bytes <= e("opt-1.3b", 8, 2000, 8, replay_cache=False).peak_total_bytes
    warning = fragmentation_warning(big)
    reserve = f"~{big.peak_reserved_bytes / 1e9:.1f} GB"
    assert warning and "expandable_segments:True" in warning and reserve in warning
    assert fragmentation_warning(plain) is None
    assert fragmentation_warning(e("opt-1.3b", 8, 2000, 1)) is None
    assert expandable_segments("max_split_size_mb:128,expandable_segments:True")
    assert not expandable_segments(None) and not expandable_segments("expandable_segments:False")


def test_a_ballooning_cache_does_not_change_what_fits() -> None:

    # opt-1.3b at batch 8 reserves ~52 GB by token 2000, but needs ~7.4 GB: it fits 10 GB.
    info = opt_model("opt-1.3b")
    assert max_tokens_that_fit(info, 10 * 10**9, batch=8) == info.positions - 8
