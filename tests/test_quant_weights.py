"""Quantized builds: transformers' own quantizers load the random weights, with random
values, and the weights are counted as stored (packed, quantization state, full precision).
Real bitsandbytes and torchao modules, on the CPU, on a tiny Llama."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import tiny_spec

torch = pytest.importorskip("torch")

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"
# q, k, v, o and the three MLP projections of both layers: what the quantizers convert
LINEAR_PARAMS = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)


def build(quant: str, double_quant: bool = False) -> Any:
    from vramtui.measure.engine.model import build as build_model

    spec = tiny_spec(path=str(TINY_LLAMA), quant=quant, double_quant=double_quant)
    return build_model(spec, torch.device("cpu"), "float32")


def test_quantization_config_is_transformers_own() -> None:
    from transformers import BitsAndBytesConfig, TorchAoConfig

    from vramtui.measure.engine.quantize import quantization_config

    assert quantization_config("none", False, torch.float16) is None
    int8 = quantization_config("int8", False, torch.float16)
    assert isinstance(int8, BitsAndBytesConfig) and int8.load_in_8bit
    nf4 = quantization_config("nf4", True, torch.bfloat16)
    assert isinstance(nf4, BitsAndBytesConfig) and nf4.load_in_4bit
    assert nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16
    fp4 = quantization_config("fp4", False, torch.float16)
    assert fp4.bnb_4bit_quant_type == "fp4" and not fp4.bnb_4bit_use_double_quant
    wo = quantization_config("int8-wo", False, torch.float16)
    assert isinstance(wo, TorchAoConfig)
    assert type(wo.quant_type).__name__ == "Int8WeightOnlyConfig"
    int4 = quantization_config("int4-wo", False, torch.bfloat16)
    assert int4.quant_type.group_size == 128
    assert type(quantization_config("fp8", False, torch.bfloat16).quant_type).__name__ == (
        "Float8WeightOnlyConfig"
    )


@pytest.mark.slow
def test_unquantized_split_is_every_tensor_in_full_precision() -> None:
    built = build("none")
    split = built.split
    assert split.quantized_params == 0 and split.packed_bytes == split.state_bytes == 0
    plain = sum(p.numel() for p in built.model.parameters())
    assert split.params == built.params == plain
    buffers = sum(b.numel() * 4 for b in built.model.buffers())
    assert built.weights_bytes == split.full_bytes == plain * 4 + buffers


@pytest.mark.slow
def test_nf4_packs_two_weights_a_byte_with_its_state_beside_them() -> None:
    unquantized = build("none")
    built = build("nf4", double_quant=True)
    split = built.split
    # the catalogue's parameter check counts a packed model as its architecture
    assert split.params == built.params == unquantized.params
    assert split.quantized_params == LINEAR_PARAMS
    assert split.packed_bytes == LINEAR_PARAMS // 2
    # absmax a block of 64 (double-quantized: one byte each, and its own absmax and code)
    assert split.state_bytes >= LINEAR_PARAMS // 64
    assert set(split.kept) >= {"embeddings", "lm_head", "norms"}
    assert split.kept["lm_head"] == split.kept["embeddings"] == 256 * 64 * 4
    assert built.weights_bytes == split.packed_bytes + split.state_bytes + split.full_bytes


@pytest.mark.slow
def test_int8_keeps_a_scale_per_row_and_quantized_random_values() -> None:
    built = build("int8")
    split = built.split
    assert split.packed_bytes == split.quantized_params == LINEAR_PARAMS
    rows = 2 * (64 + 32 + 32 + 64 + 128 + 128 + 64)
    assert split.state_bytes == rows * 4  # SCB: a float32 per output row
    q_proj = built.model.model.layers[0].self_attn.q_proj.weight
    # the quantizer saw random values (std 0.02), not uninitialised memory
    absmax = q_proj.SCB.float()
    assert bool(((absmax > 0.02) & (absmax < 0.2)).all()), absmax
    assert q_proj.dtype == torch.int8


@pytest.mark.slow
def test_torchao_int8_weight_only_counts_its_inner_tensors() -> None:
    built = build("int8-wo")
    split = built.split
    assert split.quantized_params == LINEAR_PARAMS
    assert split.packed_bytes == LINEAR_PARAMS  # qdata, int8
    assert split.state_bytes > 0  # a scale per row
    weight = built.model.model.layers[0].mlp.down_proj.weight
    assert type(weight).__name__ == "Int8Tensor"  # randomize left it alone


def test_randomize_skips_quantized_parameters() -> None:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from vramtui.measure.engine.random_weights import randomize

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64))
    quantize_(model, Int8WeightOnlyConfig())  # a float-typed tensor subclass, int8 inside
    weight = model[0].weight
    before = weight.qdata.clone()
    randomize(model, 0.02)
    assert model[0].weight is weight and torch.equal(weight.qdata, before)
    assert float(model[1].weight.detach().std()) < 0.1  # plain ones get random values


@pytest.mark.slow
def test_moe_experts_stored_as_3d_parameters_are_counted_as_kept() -> None:
    from vramtui.measure.engine.quantize import quantization_config
    from vramtui.measure.engine.random_weights import load_random
    from vramtui.measure.engine.weight_split import weight_split
    from vramtui.models.hf import transformers_config

    data = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128,
            "moe_intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "num_experts": 4,
            "num_experts_per_tok": 2, "vocab_size": 256,
            "max_position_embeddings": 128}  # fmt: skip
    config = transformers_config(data, "tiny-qwen3-moe")
    nf4 = quantization_config("nf4", False, torch.float32)
    model = load_random(config, torch.device("cpu"), torch.float32, "sdpa", None, None, nf4)
    split = weight_split(model)
    experts = [p for n, p in model.named_parameters() if ".experts." in n]
    assert experts and all(p.dim() == 3 for p in experts)
    stored = sum(p.numel() * p.element_size() for p in experts)
    assert split.kept["experts"] == stored
    four_bit = [p for p in model.parameters() if type(p).__name__ == "Params4bit"]
    assert split.quantized_params == sum(p.quant_state.shape.numel() for p in four_bit)
    assert split.params == weight_split(load_random(config, torch.device("cpu"), torch.float32,
                                                    "sdpa")).params  # fmt: skip


@pytest.mark.slow
def test_a_catalogue_model_quantized_passes_the_catalogue_parameter_check() -> None:
    from vramtui.measure.engine.model import build as build_model
    from vramtui.models.catalogue import lookup
    from vramtui.runspec import RunSpec

    spec = RunSpec(model="opt-125m", quant="nf4", device="cpu")
    built = build_model(spec, torch.device("cpu"), "float32")  # raises on a miscount
    assert built.params == lookup("opt-125m").params
    split = built.split
    assert split.packed_bytes * 2 == split.quantized_params
    # OPT ties its lm_head to the embeddings: one storage, counted once, as embeddings
    assert "lm_head" not in split.kept and split.kept["embeddings"] > 0
