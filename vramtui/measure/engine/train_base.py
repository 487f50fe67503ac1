"""The model a training run starts from: `model.build()`, exactly as for generation.

QLoRA's base is the same build with `RunSpec.quant` nf4 (double quantization, bfloat16
compute: `runspec.train_spec.qlora_base`), quantized by transformers' bitsandbytes
quantizer as it loads, like every `--quant` run.
"""

from __future__ import annotations

import torch

from vramtui.measure.engine.model import BuiltModel, build
from vramtui.runspec import RunSpec


def base_model(spec: RunSpec, device: torch.device, dtype: str) -> BuiltModel:
    """The model as `spec` loads it (quantized where `spec.quant` says so)."""
    return build(spec, device, dtype)
