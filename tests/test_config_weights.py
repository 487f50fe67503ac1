"""The checkpoint tensors and linear layers written from a config's numbers, held to the
meta-device model transformers builds (what the tracer reads), and the quantized
estimate on the approximate trace held to one on those real tensors."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.config_trace import config_trace
from vramtui.predict.config_weights import config_weights
from vramtui.predict.estimator import estimate
from vramtui.predict.quant_storage import LinearWeight
from vramtui.predict.tracing.traces import Trace

# one catalogue model of each family the layouts cover (Qwen 3 MoE and Mixtral: mixtures)
FAMILIES = [
    "llama-3.2-1b", "llama-3.1-8b", "qwen2.5-0.5b", "qwen3-0.6b", "qwen3-30b-a3b",
    "mistral-7b-v0.3", "mixtral-8x7b", "gemma-2-2b", "gemma-3-1b", "phi-3-mini-4k",
    "pythia-160m",
]  # fmt: skip


def _short(config: dict[str, Any], layers: int = 3) -> dict[str, Any]:
    """The config with its first `layers` decoder layers (widths as published)."""
    out = copy.deepcopy(config)
    for key in ("num_hidden_layers", "n_layer"):
        if key in out:
            out[key] = layers
    if isinstance(out.get("layer_types"), list):
        out["layer_types"] = out["layer_types"][:layers]
    return out


Named = list[tuple[str, int]]


def _meta(config: dict[str, Any]) -> tuple[Named, Named, list[LinearWeight], int]:
    """What the tracer reads of the model transformers builds on the meta device."""
    torch = pytest.importorskip("torch")
    from vramtui.models.hf import meta_model, transformers_config
    from vramtui.predict.tracing.inventory import linear_inventory
    from vramtui.predict.tracing.tracer_main import _weights

    model = meta_model(transformers_config(config), torch.float16)
    tensors, buffers, params = _weights(model)
    return tensors, buffers, [LinearWeight(**e) for e in linear_inventory(model)], params


@pytest.mark.parametrize("name", FAMILIES)
def test_tensors_and_linear_layers_are_the_meta_models(name: str) -> None:
    config = _short(CATALOGUE[name].config)
    tensors, buffers, linears, params = _meta(config)
    written = config_weights(config, "float16")
    assert written is not None
    assert list(written.named) == tensors
    assert list(written.buffers) == buffers
    assert list(written.linears) == linears
    assert written.params == params


def test_every_catalogue_model_of_a_written_family_has_its_parameter_count() -> None:
    covered = [e for e in CATALOGUE.values() if e.opt is None]
    for entry in covered:
        written = config_weights(entry.config, "bfloat16")
        assert written is not None, entry.name
        assert written.params == entry.params, entry.name


def test_a_family_not_written_gets_no_linear_layers() -> None:
    config = {**CATALOGUE["llama-3.2-1b"].config, "model_type": "unheard_of"}
    assert config_weights(config, "float16") is None
    trace = config_trace("x", config, 10**9, 2048, prompt=8, batch=1, dtype="float16",
                         attn="sdpa", backend="cuda")  # fmt: skip
    assert trace.linears == ()


def _real(approx: Trace, config: dict[str, Any]) -> Trace:
    """The approximate trace with the meta model's tensors and linear layers in place
    of the written ones (its steps and cache unchanged)."""
    tensors, buffers, linears, params = _meta(config)
    return replace(
        approx,
        params=params,
        tensors=tuple(size for _, size in tensors),
        buffers=tuple(size for _, size in buffers),
        tensor_names=tuple(n for n, _ in tensors),
        linears=tuple(linears),
    )


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen3-30b-a3b", "gemma-2-2b", "phi-3-mini-4k",
                                  "pythia-160m", "qwen2.5-0.5b"])  # fmt: skip
@pytest.mark.parametrize(("quant", "dq"), [("int8", False), ("nf4", True), ("fp4", False),
                                           ("int8-wo", False), ("int4-wo", False)])  # fmt: skip
def test_quantized_weights_of_the_approximate_trace_are_the_traced_ones(
    name: str, quant: str, dq: bool
) -> None:
    config = _short(CATALOGUE[name].config)
    written = config_weights(config, "float16")
    assert written is not None
    approx = config_trace(name, config, written.params, 2048, prompt=8, batch=1,
                          dtype="float16", attn="sdpa", backend="cuda")  # fmt: skip
    real = _real(approx, config)
    got = estimate(approx, tokens=16, quant=quant, double_quant=dq)
    want = estimate(real, tokens=16, quant=quant, double_quant=dq)
    assert got.quant == quant
    for field in ("weights_bytes", "weights_packed_bytes", "weights_state_bytes",
                  "weights_full_bytes", "load_peak_bytes", "peak_allocated_bytes"):  # fmt: skip
        assert getattr(got, field) == getattr(want, field), field
    assert got.weights_packed_bytes > 0
    assert got.weights_bytes < estimate(approx, tokens=16).weights_bytes
