"""`estimate --quant` and `--cache quantized`: the weights split, the loader's and the
dequantizing forward's transients, the quantized cache, the CLI's text and JSON, and
planning without the quantization libraries."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

from vramtui.commands import estimate as estimate_command
from vramtui.measure import nvml
from vramtui.models.opt import opt_model
from vramtui.predict.estimator import estimate
from vramtui.predict.quant_kv import QuantizedKv
from vramtui.predict.quantized import opt_linears, quant_plan

OPT = opt_model("opt-1.3b")
FC1 = OPT.ffn * OPT.hidden  # the largest converted weight (fc1, fc2), elements


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "gpus", lambda: [])


def test_nf4_weights_split_into_packed_state_and_full_precision() -> None:
    est = estimate(OPT, quant="nf4", double_quant=True)
    converted = [lin for lin in opt_linears(OPT) if lin.bnb]
    elements = sum(lin.rows * lin.cols for lin in converted)
    assert est.weights_packed_bytes == elements // 2
    # embeddings, positions, norms and biases stay in float16
    assert est.weights_full_bytes == (OPT.params - elements) * 2
    assert est.weights_bytes == (
        est.weights_packed_bytes + est.weights_state_bytes + est.weights_full_bytes
    )
    # double quant: one uint8 absmax per 64 weights, and per module a code, an offset,
    # a nested absmax per 256 blocks and its code
    nested = sum(-(-(lin.rows * lin.cols // 64) // 256) * 4 for lin in converted)
    assert est.weights_state_bytes == elements // 64 + len(converted) * (64 + 4 + 1024) + nested
    plain = estimate(OPT)
    assert 0.25 < est.weights_bytes / plain.weights_bytes < 0.4
    assert est.weights_bytes_per_param == est.weights_bytes / OPT.params


def test_the_loader_holds_a_16_bit_weight_while_it_converts_it() -> None:
    est = estimate(OPT, quant="int8")
    # the last layer's fc1 arrives in float16 and is copied to float16 again by
    # Int8Params while most of the weights are already in
    assert est.load_peak_bytes >= est.weights_bytes + FC1
    # transformers' warm-up counts a converted weight at 1 byte an element (int8)
    elements = sum(lin.rows * lin.cols for lin in opt_linears(OPT) if lin.bnb)
    plan = quant_plan(OPT, "int8", False, 2)
    assert plan.warmup_bytes == ((OPT.params - elements) * 2 + elements) // 2 * 2


def test_4_bit_dequantizes_beyond_four_rows_only() -> None:
    plan = quant_plan(OPT, "nf4", False, 2)
    assert plan.dequant_bytes(4) == 0
    assert plan.dequant_bytes(5) == FC1 * 2
    est = estimate(OPT, quant="nf4", prompt_tokens=8, tokens=4)
    plain = estimate(OPT, prompt_tokens=8, tokens=4)
    # the prefill (8 rows) dequantizes fc1 in float16; a batch-1 decode step does not
    # (the unquantized prefill's peak is in the logits processors, after the forward)
    above = (est.step_peak_at(0) - est.allocated_at(0)) - plain.transient_bytes
    assert FC1 * 2 - 2**20 < above <= FC1 * 2
    decode = est.step_peak_at(1) - est.allocated_at(1)
    assert decode == plain.step_peak_at(1) - plain.allocated_at(1)


def test_torchao_int8_weight_only_casts_the_weight_every_step() -> None:
    plan = quant_plan(OPT, "int8-wo", False, 2)
    assert plan.dequant_bytes(1) == FC1 * 2


def test_quantized_cache_is_predicted_in_its_stored_precision() -> None:
    est = estimate(OPT, cache="quantized", cache_bits=2, prompt_tokens=8, tokens=300)
    dynamic = estimate(OPT, prompt_tokens=8, tokens=300)
    row = OPT.hidden * 2
    want = OPT.layers * QuantizedKv(2, 2).layer_bytes(row, 8, 299)
    assert est.kv_cache_bytes == want == est.kv_at(299)
    assert est.kv_cache_bytes < dynamic.kv_cache_bytes / 3
    assert est.cache_bits == 2 and dynamic.cache_bits == 0


def test_cli_says_the_quantization_and_the_split(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "estimate", "-m", "opt-1.3b", "--quant", "nf4", "--double-quant",
        "--gpu-memory", "8GB",
    )  # fmt: skip
    assert code == 0, err
    assert "nf4+dq (bitsandbytes 4-bit NormalFloat)" in out
    for row in ("packed", "quantization state", "full precision", "bytes/param"):
        assert row in out
    assert "max new tokens that fit in 8.00 GB" in out


def test_cli_json_has_the_quantization(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "estimate", "-m", "opt-1.3b", "--quant", "int8", "--json",
                             "--cache", "quantized", "--cache-bits", "4")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert (data["quant"], data["double_quant"], data["cache_bits"]) == ("int8", False, 4)
    split = data["weights_packed_bytes"] + data["weights_state_bytes"]
    assert split + data["weights_full_bytes"] == data["weights_bytes"]
    assert data["weights_bytes_per_param"] == pytest.approx(data["weights_bytes"] / data["params"])
    assert data["peak_total_bytes_per_param"] > data["weights_bytes_per_param"]


def test_estimate_plans_without_the_quantization_library(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(estimate_command, "installed", lambda package: False)
    code, out, err = run_cli(capsys, "estimate", "-m", "opt-1.3b", "--quant", "nf4", "--json")
    assert code == 0, err
    assert json.loads(out)["quant"] == "nf4"
    code, out, err = run_cli(
        capsys, "estimate", "-m", "opt-1.3b", "--quant", "int8", "--double-quant"
    )
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].endswith("not --quant int8")


def test_cuda_only_method_is_refused_for_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "estimate", "-m", "opt-1.3b", "--quant", "int4-wo",
                             "--device", "cpu")  # fmt: skip
    assert code == 2 and out == ""
    assert "runs on CUDA GPUs only" in err and len(err.strip().splitlines()) == 1


def test_a_quantized_placement_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "estimate", "-m", "opt-1.3b", "--quant", "nf4", "--device-map", "auto",
        "--max-memory", "cuda:0=1GiB,cpu=8GiB",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert "does not place a quantized model" in err and len(err.strip().splitlines()) == 1


def test_int4_weight_only_pads_to_tinygemms_tiles() -> None:
    """torchao's tinygemm layout (read from its source; its kernels need CUDA): the
    weight padded to rows of 8 and columns of 1024 before it is packed."""
    from vramtui.predict.quant_storage import stored

    padded = stored("int4-wo", 100, 1500, 2, False)
    assert padded.packed == (104 * 2048 // 2,)
    assert padded.state == (2 * (2048 // 128) * 104 * 2,)
    assert stored("int4-wo", 4096, 4096, 2, False).packed == (4096 * 4096 // 2,)


def test_a_trace_without_its_linear_layers_is_refused_for_quant() -> None:
    """A trace made from a config's numbers lists no linear layers: quantized weights
    cannot be predicted from it, and the estimate says so in one line."""
    from dataclasses import replace

    from vramtui.errors import UsageError
    from vramtui.predict.tracing.traces import KvLayer, StepTrace, Trace

    step = StepTrace(8, 1024, 0, 0)
    trace = Trace(
        name="approximate", model_type="llama", model_class="-", params=1000, positions=64,
        vocab=10, tensors=(1000, 1000), buffers=(), layers=(KvLayer(64, 0),), prompt=8,
        batch=1, dtype="float16", attn="sdpa", backend="cuda", prefill=step,
        decode=(replace(step, cached=9),),
    )  # fmt: skip
    assert estimate(trace, tokens=2).weights_bytes == 2000
    with pytest.raises(UsageError, match="linear layers are not known"):
        estimate(trace, tokens=2, quant="nf4")
