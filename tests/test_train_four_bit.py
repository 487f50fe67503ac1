"""QLoRA's base weights: the 4-bit stand-in stores what bitsandbytes stores (packed
weight, double-quantized state), checked against a real Params4bit on the CPU."""

from __future__ import annotations

import pytest
import torch

from vramtui.predict.training.four_bit import quantize_linears
from vramtui.predict.training.replay import nf4_state


@pytest.mark.parametrize(("rows", "cols"), [(200, 300), (64, 96), (129, 33)])
def test_packed_weight_and_state_match_bitsandbytes(rows: int, cols: int) -> None:
    bnb = pytest.importorskip("bitsandbytes", reason="the .[train] extra is not installed")
    weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0))
    real = bnb.nn.Params4bit(
        weight.to(torch.bfloat16), requires_grad=False, compress_statistics=True,
        quant_type="nf4",
    ).to("cpu")  # fmt: skip
    state = real.quant_state
    kept = (state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code)
    assert nf4_state(rows * cols) == tuple(t.nbytes for t in kept)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(cols, rows, bias=False, device="meta")
            self.head = torch.nn.Linear(rows, 8, bias=False, device="meta")

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    model = Model()
    assert quantize_linears(model, torch.bfloat16) == ["proj"]
    packed = model.proj.weight
    assert (packed.shape, packed.dtype) == (real.shape, real.dtype)
    assert model.head.weight.dtype == torch.float32  # the output head is not quantized
