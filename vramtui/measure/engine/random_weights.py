"""Random weights, loaded the way a checkpoint is: through transformers' from_pretrained.

A model built from its config on the device allocates as no user's load does
(an untied lm_head before tying, init tensors, another order). Here the
architecture's checkpoint is described, tensor by tensor, as `save_pretrained`
would write it (every parameter once, tied ones once, persistent buffers), and
handed to `from_pretrained(None, config=..., state_dict=...)`: transformers'
own loader warms the caching allocator, materialises each tensor on the device
in its own order and threads, and ties the weights, exactly as for a safetensors
checkpoint. The only difference is where a tensor's bytes come from: here an
uninitialised tensor made on the device (what `tensor[...]` and `.to(device)`
of a checkpoint slice leave allocated), filled with random values afterwards,
in place.
"""

from __future__ import annotations

from typing import Any

import torch

from vramtui.models.hf import meta_model, model_class


class LazyTensor:
    """Stands where a safetensors slice would: `[...]` materialises it."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device

    def __getitem__(self, index: object) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device=self.device)

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def get_dtype(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def checkpoint_tensors(config: Any, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """What a safetensors checkpoint of this architecture holds: each parameter once
    (a tied lm_head is not written), and the persistent buffers, as lazy tensors."""
    meta = meta_model(config, dtype)
    persistent = set(meta.state_dict())
    out: dict[str, Any] = {
        name: LazyTensor(tuple(p.shape), p.dtype, device) for name, p in meta.named_parameters()
    }
    for name, buffer in meta.named_buffers():
        if name in persistent:
            out[name] = LazyTensor(tuple(buffer.shape), buffer.dtype, device)
    return out


def load_random(config: Any, device: torch.device, dtype: torch.dtype, attn: str) -> Any:
    """The model, on `device`, as from_pretrained of a checkpoint loads it; random values."""
    tensors = checkpoint_tensors(config, dtype, device)
    model = model_class(config).from_pretrained(
        None,
        config=config,
        state_dict=tensors,
        dtype=dtype,
        attn_implementation=attn,
        device_map={"": device},
    )
    randomize(model, float(getattr(config, "initializer_range", 0.02) or 0.02))
    return model


@torch.no_grad()
def randomize(model: Any, std: float) -> None:
    """Random values in every parameter, in place: no allocation, and no GEMM runs on
    uninitialised memory (zeros run faster than real weights)."""
    for param in model.parameters():  # a tied parameter appears once
        if param.is_floating_point():
            param.normal_(0.0, std)
