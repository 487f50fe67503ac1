"""bitsandbytes' 4-bit linear layer as it allocates, for a model on the meta device.

bitsandbytes cannot run on meta, so the tracer puts this in its place, allocation for
allocation (bitsandbytes' Linear4bit and MatMul4Bit, the path a GPU takes for a
training micro-batch: dequantize, then F.linear): the input cast to the compute dtype,
the weight dequantized to a transient of the compute dtype (and, with double
quantization, its float32 block scales first), the product, the output cast back to the
input's dtype; backward dequantizes again and multiplies. Nothing but the packed weight
is kept for backward. The packed weight is a uint8 parameter of (n + 1) // 2 elements,
as bitsandbytes stores it; its quantization state is counted by the estimator.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

BLOCK = 64  # bitsandbytes' 4-bit block size (absmax per 64 weights)


class _MatMul4Bit(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, packed: torch.Tensor, shape: Any, bias: Any) -> Any:
        ctx.shape = shape
        weight = _dequantized(shape, x)
        out = F.linear(x, weight, bias)
        del weight
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        weight = _dequantized(ctx.shape, grad)
        grad_x = torch.matmul(grad, weight)
        del weight
        return grad_x, None, None, None


def _dequantized(shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    numel = shape[0] * shape[1]
    scales = torch.empty((-(-numel // BLOCK),), dtype=torch.float32, device=like.device)
    weight = torch.empty(shape, dtype=like.dtype, device=like.device)
    del scales
    return weight


def _forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    bias = None if self.bias is None else self.bias.to(self.compute_dtype)
    out = _MatMul4Bit.apply(x.to(self.compute_dtype), self.weight, self.shape4, bias)
    return out.to(dtype)


def quantize_linears(model: Any, compute_dtype: torch.dtype) -> list[str]:
    """Every linear layer but the output head stored in 4 bits, as transformers'
    bitsandbytes quantizer leaves it; returns their names."""
    head = model.get_output_embeddings()
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        out_f, in_f = module.weight.shape
        packed = torch.empty(
            ((out_f * in_f + 1) // 2, 1), dtype=torch.uint8, device=module.weight.device
        )
        module.weight = torch.nn.Parameter(packed, requires_grad=False)
        module.shape4 = (out_f, in_f)
        module.compute_dtype = compute_dtype
        module.forward = types.MethodType(_forward, module)
        names.append(name)
    model.is_loaded_in_4bit = True
    return names
