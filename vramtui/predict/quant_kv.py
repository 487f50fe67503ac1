"""transformers' QuantizedCache (quanto backend) in its stored precision.

Pure arithmetic, read from transformers' cache_utils (QuantizedLayer,
QuantoQuantizedLayer) and optimum-quanto's packed tensors, checked against a real
cache on the CPU (tests/test_quant_kv.py). Each layer keeps its K and V twice:
- quantized, per group of `q_group_size` values along the flattened tensor
  (axis 0): the values packed 8 / nbits to a byte, rows of `q_group_size` bytes
  (`ceil(groups / (8 / nbits))` rows), and a scale and a shift per group in the
  model's dtype;
- a residual window in the model's dtype: the positions since the last time it
  was flushed into the quantized part. The prefill is quantized at once; each
  decode step adds one position to the window, and the step that would fill it
  to `residual_length` quantizes everything again (window emptied).
Every decode step also dequantizes the whole layer's K and V to the model's dtype
and concatenates them with the window and the new position: two full-precision
copies of one layer's K and V are alive while that layer attends.
"""

from __future__ import annotations

from dataclasses import dataclass

Q_GROUP_SIZE = 64  # QuantizedLayer's defaults, which transformers' cache_config keeps
RESIDUAL_LENGTH = 128


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class QuantizedKv:
    """The quantized cache of one run: `row` is one layer's K (or V) for one position,
    the whole batch, in the model's dtype (batch x kv heads x head dim x bytes)."""

    nbits: int
    elem_bytes: int
    q_group_size: int = Q_GROUP_SIZE
    residual_length: int = RESIDUAL_LENGTH

    def split(self, prompt: int, step: int) -> tuple[int, int]:
        """(positions quantized, positions in the residual window) after `step`
        (step 0: the prefill)."""
        window = step % self.residual_length
        return prompt + step - window, window

    def quantized_tensors(self, row: int, positions: int) -> tuple[int, int, int]:
        """One quantized K (or V) holding `positions` positions: (packed data, scale,
        shift) bytes."""
        values = positions * row // self.elem_bytes
        groups = _ceil(values, self.q_group_size)
        data = _ceil(groups, 8 // self.nbits) * self.q_group_size
        return data, groups * self.elem_bytes, groups * self.elem_bytes

    def quantized_bytes(self, row: int, positions: int) -> int:
        return sum(self.quantized_tensors(row, positions))

    def layer_bytes(self, row: int, prompt: int, step: int) -> int:
        """One layer's K and V after `step`: quantized part and residual window."""
        quantized, window = self.split(prompt, step)
        return 2 * (self.quantized_bytes(row, quantized) + window * row)

    def step_transient(self, row: int, prompt: int, step: int) -> int:
        """The full-precision copies one decode step makes of one layer: its K and V
        dequantized, and each concatenated with the window and the new position."""
        if step == 0:
            return 0
        quantized, window = self.split(prompt, step - 1)
        return 2 * (quantized * row + (quantized + window + 1) * row)
