"""The torchao transients of predict/quantized.py against the bytes torchao's own code
holds, counted op by op on the CPU (vramtui/testing/live_bytes.py): converting a
weight at load (int8 and float8 weight-only for real, int4 weight-only with its CUDA
packing kernel stood in for by a tensor of its output's size) and the dequantizing
forward."""

from __future__ import annotations

import pytest
import torch

from vramtui.predict.quant_storage import LinearWeight, QuantWeights
from vramtui.predict.quantized import LoadItem, QuantPlan, convert_ops
from vramtui.testing.live_bytes import LiveBytes

ao = pytest.importorskip("torchao.quantization")
ROWS, COLS = 256, 1024  # out_features, in_features: no padding for int4's tiles
BF16 = 2


def predicted(method: str) -> LoadItem:
    return LoadItem(convert_ops(method, LinearWeight("fc", ROWS, COLS, True, True), BF16, False))


def converted_peak(config: object) -> int:
    """The most bytes alive while torchao's quantize_ converts one bf16 weight, the
    weight itself included (the loader's 16-bit tensor). The loader converts without
    autograd (with it, amax would keep float8's abs() alive for a backward)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(COLS, ROWS, bias=False, dtype=torch.bfloat16)
    with torch.no_grad(), LiveBytes(ignore=[linear.weight]) as live:
        ao.quantize_(linear, config)
    return live.peak + ROWS * COLS * BF16


def test_int8_weight_only_holds_two_float32_copies_while_converting() -> None:
    peak = converted_peak(ao.Int8WeightOnlyConfig())
    # input * (1 / scale) and its round(), float32, alive together: 10 bytes an element
    assert predicted("int8-wo").peak == pytest.approx(peak, abs=16 * ROWS)
    assert peak >= ROWS * COLS * (BF16 + 2 * 4)


def test_float8_weight_only_holds_three_float32_copies_and_its_output() -> None:
    peak = converted_peak(ao.Float8WeightOnlyConfig())
    # the float32 cast, the scaled and the clamped copies and the float8 data
    assert predicted("fp8").peak == pytest.approx(peak, abs=16 * ROWS)
    assert peak >= ROWS * COLS * (BF16 + 3 * 4 + 1)


class _Int4Pack(LiveBytes):
    """The tinygemm packing kernel has no CPU build: an empty tensor of its output's
    size (two 4-bit values a byte, int32 tiles) stands in for it."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._convert_weight_to_int4pack.default:
            rows, half_cols = args[0].shape
            out = torch.empty(rows * half_cols // 4, dtype=torch.int32)
            self._count(out)
            self.peak = max(self.peak, self.live)
            return out
        return super().__torch_dispatch__(func, types, args, kwargs)


def test_int4_weight_only_holds_its_padded_copy_and_int32_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchao.quantization.quantize_.workflows.int4.int4_tile_packed_to_4d_tensor import (
        Int4TilePackedTo4dTensor,
    )

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    weight = torch.randn(ROWS, COLS, dtype=torch.bfloat16)
    with _Int4Pack(ignore=[weight]) as live:
        Int4TilePackedTo4dTensor.from_hp(weight, [1, 128])
    peak = live.peak + ROWS * COLS * BF16
    # input, padded copy, int32 data and the two int32 halves of the packing
    assert predicted("int4-wo").peak == pytest.approx(peak, abs=16 * ROWS)
    assert peak >= ROWS * COLS * (BF16 + BF16 + 4 + 2 + 2)


def forward_extra(config: object, rows: int) -> int:
    """Bytes alive above the output during a quantized linear's forward of `rows`."""
    linear = torch.nn.Linear(COLS, ROWS, bias=False, dtype=torch.bfloat16)
    ao.quantize_(linear, config)
    x = torch.randn(rows, COLS, dtype=torch.bfloat16)
    names, _ = linear.weight.__tensor_flatten__()
    stored = [getattr(linear.weight, name) for name in names]
    with torch.no_grad(), LiveBytes(ignore=[x, *stored]) as live:
        linear(x)
    return live.peak


def plan(method: str) -> QuantPlan:
    lin = LinearWeight("fc", ROWS, COLS, True, True)
    weights = QuantWeights(method, False, 0, 0, 0, (), (lin,), ())
    return QuantPlan(weights, BF16, (), 0)


@pytest.mark.parametrize(
    ("method", "config"),
    [("int8-wo", ao.Int8WeightOnlyConfig()), ("fp8", ao.Float8WeightOnlyConfig())],
)
def test_the_dequantizing_forward_holds_what_the_plan_says(method: str, config: object) -> None:
    rows = 2
    extra = forward_extra(config, rows)
    outputs = 3 * rows * ROWS * BF16  # the product, its scaled copy, the result
    assert plan(method).dequant_bytes(rows) <= extra <= plan(method).dequant_bytes(rows) + outputs
