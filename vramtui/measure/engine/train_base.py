"""The model a training run starts from: `model.build()` as for generation, or, for
QLoRA, the same load with bitsandbytes' 4-bit nf4 (double quantization, bfloat16
compute) through transformers' BitsAndBytesConfig.

The 4-bit load stands here until `build()` loads `RunSpec.quant` itself; then
`base_model` is `build(spec, device, dtype)` for every method.
"""

from __future__ import annotations

from typing import Any

import torch

from vramtui.measure.engine.model import (
    TORCH_DTYPES,
    BuiltModel,
    _config_for,
    _unique_tensors,
    build,
    configure_backends,
)
from vramtui.measure.engine.random_weights import checkpoint_tensors, randomize
from vramtui.models.hf import meta_model, model_class
from vramtui.runspec import RunSpec


def base_model(spec: RunSpec, device: torch.device, dtype: str) -> BuiltModel:
    """The model as `spec` loads it; quantized to nf4 where `spec.quant` says so."""
    if spec.quant != "nf4":
        return build(spec, device, dtype)
    return _nf4_model(spec, device, dtype)


def nf4_config(double_quant: bool, compute: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute,
    )


def _nf4_model(spec: RunSpec, device: torch.device, dtype: str) -> BuiltModel:
    """Random weights (or a checkpoint's) through from_pretrained, quantized by
    transformers' bitsandbytes quantizer as they are loaded."""
    configure_backends(spec, device)
    torch_dtype = TORCH_DTYPES[dtype]
    quantization = nf4_config(spec.double_quant, torch_dtype)
    if spec.source == "checkpoint":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            spec.path,
            dtype=torch_dtype,
            attn_implementation=spec.attn,
            use_safetensors=None if spec.allow_pickle else True,
            local_files_only=not spec.allow_download,
            quantization_config=quantization,
            device_map={"": device},
        )
    else:
        config = _config_for(spec)
        std = float(getattr(config, "initializer_range", 0.02) or 0.02)
        tensors = checkpoint_tensors(meta_model(config, torch_dtype), {"": str(device)})
        for lazy in tensors.values():
            lazy.std = std  # random values before quantizing: 4-bit weights take no normal_
        model = model_class(config).from_pretrained(
            None,
            config=config,
            state_dict=tensors,
            dtype=torch_dtype,
            attn_implementation=spec.attn,
            quantization_config=quantization,
            device_map={"": device},
        )
        randomize(model, std)  # what stayed in floating point (norms, embeddings)
    params, size = _unique_tensors(model)
    return BuiltModel(model, None, params, size)
