"""The per-step hook: a LogitsProcessor that samples memory right after each forward.

transformers is imported by the engine only, so the class is made on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vramtui.testing.faults import Faults

# A layer's states: full precision (a QuantizedCache's residual window), and quantized
QUANTIZED_STATES = ("_quantized_keys", "_quantized_values")


def cache_bytes(cache: Any, device: Any = None) -> int | None:
    """Bytes a transformers cache object (DynamicCache and relatives) holds on
    `device` (an offloaded cache keeps most layers on the CPU); anywhere if None.
    A QuantizedCache counts as stored: its quantized states (packed data, scales and
    shifts, the backend's inner tensors) and its full-precision residual window."""
    from vramtui.measure.engine.weight_split import stored_bytes

    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    total = 0
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values", *QUANTIZED_STATES):
                t = getattr(layer, name, None)
                if t is not None and hasattr(t, "element_size"):
                    total += stored_bytes(t, device)
        return total
    for name in ("key_cache", "value_cache"):
        for t in getattr(cache, name, None) or []:
            if hasattr(t, "element_size"):
                total += t.numel() * t.element_size()
    return total


class CacheWatch:
    """Keeps the model's latest cache object (a forward hook), for counting its bytes."""

    def __init__(self, model: Any) -> None:
        self.cache: Any = None
        self.device = getattr(model, "device", None)
        self._handle = model.register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        # transformers >= 5.2x names it `cache` (and warns on the old name, in the
        # user's own output when a program is profiled); earlier, past_key_values.
        cache = getattr(output, "cache", None)
        self.cache = cache if cache is not None else getattr(output, "past_key_values", None)

    def bytes(self) -> int | None:
        return cache_bytes(self.cache, self.device)

    def remove(self) -> None:
        self._handle.remove()


def step_sampler(on_step: Callable[[int], None], faults: Faults | None) -> Any:
    """A LogitsProcessor calling `on_step(i)` once per generated token i, right after
    that step's forward (token 0's step is the prefill)."""
    from transformers import LogitsProcessor

    class StepSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.token = 0

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if faults is not None:
                faults.at_step(self.token)
            on_step(self.token)
            self.token += 1
            return scores

    return StepSampler()
