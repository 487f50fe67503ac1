"""The quantized KV cache's rule (predict/quant_kv.py) against a real transformers
QuantizedCache with the quanto backend, on the CPU: its tensors' bytes after N steps."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from vramtui.predict.quant_kv import QuantizedKv

torch = pytest.importorskip("torch")
pytest.importorskip("optimum.quanto")

pytestmark = pytest.mark.slow

CONFIG = dict(model_type="llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, intermediate_size=96, vocab_size=300,
              max_position_embeddings=512)  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Any:
    from transformers import AutoModelForCausalLM

    from vramtui.models.hf import transformers_config

    torch.manual_seed(0)
    built = AutoModelForCausalLM.from_config(transformers_config(CONFIG), dtype=torch.float16)
    return built.eval()


def tensor_bytes(tensor: Any) -> int:
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None and type(tensor) is not torch.Tensor:
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.untyped_storage().nbytes())


def cache_bytes(cache: Any) -> int:
    total = 0
    for layer in cache.layers:
        for tensor in (layer._quantized_keys, layer._quantized_values, layer.keys, layer.values):
            total += tensor_bytes(tensor)
    return total


@pytest.mark.parametrize("nbits", [4, 2])
@pytest.mark.parametrize(("prompt", "steps"), [(5, 0), (5, 3), (7, 127), (7, 128), (130, 130)])
def test_predicted_kv_bytes_equal_the_real_cache(
    model: Any, nbits: int, prompt: int, steps: int
) -> None:
    from transformers import QuantizedCache

    batch = 2
    cache = QuantizedCache(backend="quanto", config=model.config, nbits=nbits)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        model(input_ids=torch.zeros((batch, prompt), dtype=torch.long), past_key_values=cache)
        for _ in range(steps):
            model(input_ids=torch.zeros((batch, 1), dtype=torch.long), past_key_values=cache)
    row = batch * 2 * 32 * 2  # batch x kv heads x head dim x float16
    rule = QuantizedKv(nbits, 2)
    assert cache_bytes(cache) == 2 * rule.layer_bytes(row, prompt, steps)
    quantized, window = rule.split(prompt, steps)
    held = cache.layers[0].keys
    assert (held.shape[-2] if held.dim() == 4 else 0) == window
    assert quantized + window == prompt + steps
