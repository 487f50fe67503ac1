"""--quant as transformers' own quantization config, for `from_pretrained`.

Every quantized build, random or checkpoint, hands the same config to the same
loader: bitsandbytes through `BitsAndBytesConfig`, torchao through `TorchAoConfig`.
Imported by the engine only (torch, transformers and the quantizing library).
"""

from __future__ import annotations

from typing import Any

import torch

from vramtui.runspec.quant import method


def quantization_config(quant: str, double_quant: bool, dtype: torch.dtype) -> Any | None:
    """transformers' config for --quant (None for none); 4-bit computes in `dtype`."""
    chosen = method(quant)
    if chosen.backend == "bitsandbytes":
        from transformers import BitsAndBytesConfig

        if chosen.name == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=chosen.name,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=double_quant,
        )
    if chosen.backend == "torchao":
        from transformers import TorchAoConfig

        return TorchAoConfig(_torchao_config(chosen.name))
    return None


def _torchao_config(name: str) -> Any:
    from torchao import quantization as ao

    if name == "int8-wo":
        return ao.Int8WeightOnlyConfig()
    if name == "int4-wo":
        # torch's own tinygemm kernel (_weight_int4pack_mm); the plain layout needs mslk
        return ao.Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")
    return ao.Float8WeightOnlyConfig()
