"""Which kernel torch's scaled_dot_product_attention runs for training inputs, against the
training tracer's rule (vramtui.predict.training.step_tracer.math_kernel).

The training trace stands in the fused kernels' allocations (output and a float32
log-sum-exp) except where it expects the math kernel (float32 queries with grouped-query
heads on a GPU), whose float32 score matrix it then keeps. This script runs one forward
and backward of each case on the device with gradients on, records the aten attention
op that ran, and says whether the rule agrees: float32 and bfloat16, grouped-query heads
(32 query, 8 key/value, `enable_gqa=True` as transformers passes it without a mask) and
not, causal, batch 4 × 512, head dimension 64 (llama-3.2-1b's attention).

Usage:
  python benchmarks/sdpa_kernel_choice.py --device cuda \
      --out benchmarks/results/sdpa_kernel_choice/sdpa_kernel_choice-h100.json
  python benchmarks/sdpa_kernel_choice.py --device cpu   # the CPU's flash kernel takes all four
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

FUSED = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
}


def kernel_of(device: str, dtype: Any, grouped: bool) -> str:
    """The attention kernel one forward runs: a fused one's name, or "math"."""
    import torch
    import torch.nn.functional as F
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            seen.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    kv_heads = 8 if grouped else 32
    q = torch.randn(4, 32, 512, 64, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(4, kv_heads, 512, 64, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn(4, kv_heads, 512, 64, device=device, dtype=dtype, requires_grad=True)
    with Ops():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=grouped)
    out.sum().backward()
    fused = [FUSED[name] for name in seen if name in FUSED]
    return fused[0] if fused else "math"


def main(argv: list[str] | None = None) -> int:
    import torch

    from vramtui.predict.training.step_tracer import math_kernel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    backend = "cuda" if args.device.startswith("cuda") else "cpu"
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for grouped in (True, False):
            ran = kernel_of(args.device, dtype, grouped)
            q = torch.empty((4, 32, 512, 64), dtype=dtype, device="meta")
            k = torch.empty((4, 8 if grouped else 32, 512, 64), dtype=dtype, device="meta")
            expected_math = math_kernel(backend, q, k, grouped)
            agrees = (ran == "math") == expected_math
            rows.append(
                {
                    "dtype": str(dtype).removeprefix("torch."),
                    "grouped_query": grouped,
                    "kernel": ran,
                    "tracer_expects_math": expected_math,
                    "agrees": agrees,
                }
            )
            print(
                f"{rows[-1]['dtype']:9} gqa={grouped!s:5} ran {ran:12} "
                f"tracer expects {'math' if expected_math else 'fused'}: "
                f"{'agrees' if agrees else 'DISAGREES'}"
            )
    if args.out:
        device = torch.cuda.get_device_name(0) if backend == "cuda" else "cpu"
        write_json(args.out, {"device": device, "cases": rows})
    return 0 if all(row["agrees"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
