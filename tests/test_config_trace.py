"""The approximate trace from a config's numbers (what `vramtui fit` reads a model from
when no trace of its code is cached), held to the config and to a real trace."""

from __future__ import annotations

import pytest

from vramtui.models.architecture import DTYPE_BYTES
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.config_trace import Shape, config_trace, windows
from vramtui.predict.estimator import estimate
from vramtui.predict.tracing.traces import Trace, trace_model


def _approx(name: str, **shape: object) -> Trace:
    entry = CATALOGUE[name]
    kw: dict = {"prompt": 8, "batch": 1, "dtype": "float16", "attn": "sdpa", "backend": "cuda"}
    return config_trace(entry.name, entry.config, entry.params, entry.positions or 2048,
                        **{**kw, **shape})  # fmt: skip


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3", "phi-4"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_weights_and_cache_are_the_configs(name: str, dtype: str) -> None:
    entry = CATALOGUE[name]
    trace = _approx(name, dtype=dtype, batch=3)
    elem = DTYPE_BYTES[dtype]
    # every parameter once, to the byte; the buffers no checkpoint holds beside them
    assert sum(trace.tensors) == entry.params * elem
    assert trace.weights_bytes() == sum(trace.tensors) + sum(trace.buffers)
    assert trace.kv_bytes_per_token() == entry.kv_bytes_per_token(elem, 3)


def test_sliding_layers_follow_each_familys_pattern() -> None:
    gemma2 = CATALOGUE["gemma-2-2b"].config
    held = windows(gemma2, 4)
    assert held == [gemma2["sliding_window"], 0, gemma2["sliding_window"], 0]
    gemma3 = CATALOGUE["gemma-3-1b"].config
    assert windows(gemma3, 12).count(0) == 2  # one global layer in six
    assert windows(CATALOGUE["llama-3.1-8b"].config, 3) == [0, 0, 0]
    typed = {"sliding_window": 16, "layer_types": ["full_attention", "sliding_attention"]}
    assert windows(typed, 2) == [0, 16]


def test_a_mixture_of_experts_runs_each_token_through_its_experts() -> None:
    config = CATALOGUE["qwen3-30b-a3b"].config
    shape = Shape.of(config)
    assert shape.ffn == config["moe_intermediate_size"] * config["num_experts_per_tok"]


def test_eager_attention_keeps_the_score_matrices() -> None:
    sdpa = _approx("llama-3.2-1b", prompt=2000)
    eager = _approx("llama-3.2-1b", prompt=2000, attn="eager")
    heads = CATALOGUE["llama-3.2-1b"].heads
    scores = heads * 2000 * 2000 * 2
    assert eager.prefill.extra - sdpa.prefill.extra >= scores


@pytest.mark.engine
@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen2.5-0.5b"])
def test_the_approximation_is_near_a_trace_of_the_models_code(name: str) -> None:
    """The config's numbers give what the traced code gives at a short prompt, within
    1 % of the need (the estimator's, not a measurement)."""
    entry = CATALOGUE[name]
    positions = entry.positions or 2048
    shape = {"prompt": 8, "batch": 1, "dtype": "float16", "attn": "sdpa", "backend": "cuda"}
    traced = trace_model(entry.name, dict(entry.config), positions, **shape)  # type: ignore[arg-type]
    assert traced is not None
    approx = config_trace(entry.name, entry.config, entry.params, positions, **shape)  # type: ignore[arg-type]
    for tokens in (200, 2000, 16000):
        want = estimate(traced, prompt_tokens=8, tokens=tokens).required_bytes
        got = estimate(approx, prompt_tokens=8, tokens=tokens).required_bytes
        assert got == pytest.approx(want, rel=0.01)


TINY_LLAMA = {
    "model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 1024, "tie_word_embeddings": False,
}  # fmt: skip


@pytest.mark.engine
@pytest.mark.parametrize(
    ("dtype", "backend"),
    [("float16", "cuda"), ("bfloat16", "cuda"), ("float32", "cuda"), ("float16", "cpu")],
)
def test_eager_scores_at_a_long_prompt_are_what_the_traced_code_allocates(
    dtype: str, backend: str
) -> None:
    """At a long prompt the score matrices are the prefill's peak: the softmax's float32
    copy of its input is there for bfloat16 and on the CPU, not for float16 on CUDA, and
    float32 scores are not copied at all; the config's numbers follow the traced code
    within 4 % (a missing or extra score matrix is 20 % or more here)."""
    traced = trace_model("tiny", TINY_LLAMA, 1024, prompt=512, batch=1, dtype=dtype,
                         attn="eager", backend=backend)  # fmt: skip
    assert traced is not None
    approx = config_trace("tiny", TINY_LLAMA, traced.params, 1024, prompt=512, batch=1,
                          dtype=dtype, attn="eager", backend=backend)  # fmt: skip
    assert approx.prefill.extra == pytest.approx(traced.prefill.extra, rel=0.04)


def test_a_models_checkpoint_is_written_out_once_for_every_shape_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vramtui.predict import config_trace as module

    module._written.cache_clear()
    written: list[str] = []
    real = module.config_weights

    def counted(config: dict, dtype: str):  # type: ignore[no-untyped-def]
        written.append(dtype)
        return real(config, dtype)

    monkeypatch.setattr(module, "config_weights", counted)
    traces = [_approx("qwen2.5-7b", prompt=p, batch=b) for p in (8, 2000) for b in (1, 4)]
    assert written == ["float16"]  # four shapes, one checkpoint
    assert len({t.tensor_names for t in traces}) == 1 and traces[0].tensor_names
    assert _approx("qwen2.5-7b", dtype="float32").tensors == tuple(2 * n for n in traces[0].tensors)
    assert written == ["float16", "float32"]
    module._written.cache_clear()
