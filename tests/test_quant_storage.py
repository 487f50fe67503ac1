"""The quantizers' storage rules (predict/quant_storage.py) against real quantized
modules: tiny models saved and loaded on the CPU through transformers'
`from_pretrained(quantization_config=...)` with bitsandbytes and torchao; every
converted module's tensors and the whole model's, to the byte."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from vramtui.predict.quant_storage import LinearWeight, QuantWeights, quantize_tensors, stored

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")
pytest.importorskip("torchao")

pytestmark = pytest.mark.slow

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=500,
            max_position_embeddings=128)  # fmt: skip
CONFIGS: dict[str, dict[str, Any]] = {
    # untied, grouped queries; in_features not a multiple of 64 in down_proj (96)
    "llama": dict(model_type="llama", **TINY, intermediate_size=96, num_key_value_heads=2,
                  tie_word_embeddings=False),
    # tied lm_head, biases, learned positions
    "opt": dict(model_type="opt", **TINY, ffn_dim=128, word_embed_proj_dim=64),
    # tied, biases on q/k/v
    "qwen2": dict(model_type="qwen2", **TINY, intermediate_size=128, num_key_value_heads=2,
                  tie_word_embeddings=True),
    # experts as 3-D parameters, a router that is not nn.Linear
    "mixtral": dict(model_type="mixtral", **TINY, intermediate_size=128, num_key_value_heads=2,
                    num_local_experts=4, num_experts_per_tok=2),
}  # fmt: skip
METHODS = ("int8", "nf4", "nf4+dq", "fp4", "fp4+dq", "int8-wo")


def quant_config(method: str) -> Any:
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if method == "int8-wo":
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    kind, _, dq = method.partition("+")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=kind,
        bnb_4bit_use_double_quant=bool(dq),
        bnb_4bit_compute_dtype=torch.float16,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model, random weights in float16, saved once."""
    from transformers import AutoModelForCausalLM

    from vramtui.models.hf import transformers_config

    out = {}
    for name, data in CONFIGS.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(transformers_config(data), dtype=torch.float16)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = path
    return out


def loaded(path: Path, method: str) -> Any:
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(
            path, quantization_config=quant_config(method), dtype=torch.float16, device_map="cpu"
        )


def weight_tensors(weight: Any) -> list[Any]:
    """The tensors a (quantized) parameter holds: a tensor subclass's inner tensors,
    bitsandbytes' CB/SCB and its quant state (nested too)."""
    flatten = getattr(type(weight), "__tensor_flatten__", None)
    if flatten is not None and "Params" not in type(weight).__name__:
        names, _ = weight.__tensor_flatten__()
        return [getattr(weight, n) for n in names]
    out = [weight]
    out += [t for t in (getattr(weight, "CB", None), getattr(weight, "SCB", None)) if t is not None]
    state = getattr(weight, "quant_state", None)
    while state is not None:
        out += [t for t in (state.absmax, state.code, state.offset) if t is not None]
        state = state.state2
    return out


def storages(model: Any) -> dict[str, dict[int, int]]:
    """Each module's tensors' storages (data pointer -> bytes), weights' state included."""
    out: dict[str, dict[int, int]] = {}
    for name, module in model.named_modules():
        held = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        found: dict[int, int] = {}
        for tensor in held:
            for inner in weight_tensors(tensor):
                found[inner.untyped_storage().data_ptr()] = inner.untyped_storage().nbytes()
        if found:
            out[name] = found
    return out


def predicted(arch: str, method: str) -> QuantWeights:
    """The rule applied to the model built on the meta device (no weights read)."""
    from vramtui.models.hf import meta_model, transformers_config
    from vramtui.predict.tracing.inventory import linear_inventory
    from vramtui.predict.tracing.tracer_main import _weights

    model = meta_model(transformers_config(CONFIGS[arch]), torch.float16)
    tensors, buffers, _ = _weights(model)
    linears = tuple(LinearWeight(**entry) for entry in linear_inventory(model))
    kind, _, dq = method.partition("+")
    return quantize_tensors(kind, bool(dq), tuple(tensors + buffers), linears, 2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", list(CONFIGS))
def test_predicted_bytes_equal_the_real_tensors(
    saved: dict[str, Path], arch: str, method: str
) -> None:
    model = loaded(saved[arch], method)
    real = storages(model)
    rule = predicted(arch, method)
    kind, _, dq = method.partition("+")
    # one module at a time: the packed weight and its state
    assert rule.converted
    for lin in rule.converted:
        want = stored(kind, lin.rows, lin.cols, 2, bool(dq))
        weight = weight_tensors(model.get_submodule(lin.name).weight)
        held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in weight}
        assert sorted(held.values()) == sorted(want.tensors), lin.name
    for lin in rule.kept:  # left in float16: the output embedding, tied weights
        weight = model.get_submodule(lin.name).weight
        assert (weight.dtype, weight.numel()) == (torch.float16, lin.rows * lin.cols), lin.name
    # the whole model: every storage once (a tied weight is one storage)
    unique: dict[int, int] = {}
    for found in real.values():
        unique.update(found)
    assert sum(unique.values()) == rule.total_bytes


def test_fp8_weight_only_storage_equals_torchaos_tensors() -> None:
    """torchao's float8 weight-only runs on CUDA only, but quantize_ makes its tensors
    on the CPU: the rule against them (bfloat16, 96 x 200)."""
    from torchao.quantization import Float8WeightOnlyConfig, quantize_

    layer = torch.nn.Sequential(torch.nn.Linear(200, 96, dtype=torch.bfloat16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(layer, Float8WeightOnlyConfig())
    held = sorted(t.untyped_storage().nbytes() for t in weight_tensors(layer[0].weight))
    assert held == sorted(stored("fp8", 96, 200, 2, False).tensors)


def test_experts_and_output_embedding_stay_in_the_model_dtype() -> None:
    rule = predicted("mixtral", "nf4")
    assert "lm_head" in {lin.name for lin in rule.kept}
    assert not any("experts" in lin.name for lin in rule.converted)
    # 3-D experts: 2 layers x 4 experts x (gate_up 256 x 64 + down 64 x 128) in float16
    assert rule.full_bytes > 2 * 4 * (256 * 64 + 64 * 128) * 2


@pytest.mark.parametrize("proj", [64, 48])
def test_opt_records_linears_are_the_tracers(proj: int) -> None:
    """OPT's hand-written record (no trace) lists the linear layers transformers'
    quantizers see on the model itself, project_in/out included."""
    from vramtui.models.hf import meta_model, transformers_config
    from vramtui.models.opt import model_info_for_config
    from vramtui.predict.quantized import opt_linears
    from vramtui.predict.tracing.inventory import linear_inventory

    config = {**CONFIGS["opt"], "word_embed_proj_dim": proj, "do_layer_norm_before": True}
    info = model_info_for_config(config)
    assert info is not None
    model = meta_model(transformers_config(config), torch.float16)
    traced = {LinearWeight(**entry) for entry in linear_inventory(model)}
    assert set(opt_linears(info)) == traced


@pytest.mark.engine  # the tracer runs in a child process
@pytest.mark.parametrize("method", ["int8", "nf4+dq", "int8-wo"])
@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_a_traced_estimate_holds_the_real_models_bytes(
    saved: dict[str, Path], arch: str, method: str
) -> None:
    """Through the tracer's JSON (tensor names, linear layers) to estimate(): the
    quantized weights predicted on the CPU are every storage the loaded model holds."""
    from vramtui.predict.estimator import estimate
    from vramtui.predict.tracing.traces import trace_model

    trace = trace_model(arch, CONFIGS[arch], 128, prompt=4, batch=1, dtype="float16",
                        attn="sdpa", backend="cpu")  # fmt: skip
    assert trace is not None
    kind, _, dq = method.partition("+")
    est = estimate(trace, prompt_tokens=4, tokens=2, dtype="float16", backend="cpu",
                   quant=kind, double_quant=bool(dq))  # fmt: skip
    unique: dict[int, int] = {}
    for found in storages(loaded(saved[arch], method)).values():
        unique.update(found)
    assert est.weights_bytes == sum(unique.values())
    # the split covers every byte: the rotary buffers count as full precision
    split = est.weights_packed_bytes + est.weights_state_bytes + est.weights_full_bytes
    assert split == est.weights_bytes and sum(trace.buffers) > 0
