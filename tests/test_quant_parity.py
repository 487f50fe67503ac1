"""A quantized random build is a quantized checkpoint load: the same architecture saved
unquantized (safetensors) and loaded with --checkpoint and the same --quant holds the
same weights, to the byte and part by part, and the same KV cache at every sample.
On the CPU the allocator figures are the process's RSS, which no two runs share to the
byte; benchmarks/quant_parity.py compares every sample's allocated, reserved and step
peak on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import record, tiny_spec

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"  # untied
TIED_OPT = {
    "model_type": "opt", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "ffn_dim": 128, "vocab_size": 256,
    "max_position_embeddings": 128, "word_embed_proj_dim": 64,
    "do_layer_norm_before": True, "tie_word_embeddings": True,
    "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2,
}  # fmt: skip


def save_unquantized(config_path: Path, folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads(config_path.read_text())
    model_type = config.pop("model_type")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))
    model.save_pretrained(folder)  # safetensors, float32


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int8", "nf4"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied-opt", "untied-llama"])
def test_quantized_random_build_matches_the_quantized_checkpoint(
    tmp_path: Path, quant: str, tied: bool
) -> None:
    config = TINY_LLAMA
    if tied:
        config = tmp_path / "tiny-opt-64.json"
        config.write_text(json.dumps(TIED_OPT))
    save_unquantized(config, tmp_path / "ckpt")
    common = dict(quant=quant, tokens=6, dtype="float32")
    random = record(tiny_spec(path=str(config), **common))
    loaded = record(tiny_spec(source="checkpoint", path=str(tmp_path / "ckpt"), **common))
    for view in (random, loaded):
        assert view.status == "completed" and view.loaded is not None
    a, b = random.loaded, loaded.loaded
    assert a is not None and b is not None
    assert (a.quant, a.params, a.weights_bytes) == (b.quant, b.params, b.weights_bytes)
    assert a.split == b.split and a.split is not None and a.split.quantized_params > 0
    assert [s.kv_bytes for s in random.samples] == [s.kv_bytes for s in loaded.samples]
    assert len(random.token_samples) == len(loaded.token_samples) == 6
