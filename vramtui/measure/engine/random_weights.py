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

from vramtui.errors import UsageError
from vramtui.models.hf import meta_model, model_class
from vramtui.models.layer_placement import device_of, infer_device_map


class LazyTensor:
    """Stands where a safetensors slice would: `[...]` materialises it. `std`: fill it
    with random values at once (weights offloaded to the CPU, which accelerate keeps
    out of the model's parameters, where `randomize` cannot reach them)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device | str,
        std: float | None = None,
    ) -> None:
        self.shape, self.dtype, self.device, self.std = shape, dtype, device, std

    def __getitem__(self, index: object) -> torch.Tensor:
        tensor = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        if self.std is not None and tensor.is_floating_point():
            fill_random(tensor, self.std)
        return tensor


_POOL: dict[tuple[torch.dtype, float], torch.Tensor] = {}
POOL_ELEMENTS = 1 << 22


def fill_random(tensor: torch.Tensor, std: float) -> None:
    """Random values by copying a block of normal draws over the tensor: a CPU makes
    normal draws at ~0.15 GB/s a core, too slow for tens of GB of offloaded weights;
    a copy runs at memory speed. Memory and GEMM speed do not depend on the values."""
    pool = _POOL.get((tensor.dtype, std))
    if pool is None:
        pool = torch.empty(POOL_ELEMENTS, dtype=tensor.dtype, device=tensor.device)
        _POOL[(tensor.dtype, std)] = pool.normal_(0.0, std)
    flat = tensor.view(-1)
    for start in range(0, flat.numel(), pool.numel()):
        n = min(pool.numel(), flat.numel() - start)
        flat[start : start + n].copy_(pool[:n])


def checkpoint_tensors(
    meta: Any, device_map: dict[str, str], std: float | None = None, quantized: bool = False
) -> dict[str, Any]:
    """What a safetensors checkpoint of this architecture holds: each parameter once
    (a tied lm_head is not written), and the persistent buffers, as lazy tensors, each
    on the device the map gives it (those on the CPU filled with random values).

    `quantized`: the quantizer reads the values (absmax, LLM.int8's outliers), so every
    tensor is made on the CPU with random values, as a safetensors slice is read, and
    the loader moves it to its device (one allocation there, as for a checkpoint)."""
    persistent = set(meta.state_dict())
    tensors = [*meta.named_parameters(), *meta.named_buffers()]
    out: dict[str, Any] = {}
    for name, t in tensors:
        if name in persistent and name not in out:
            where = device_of(name, device_map)
            on_cpu = where == "cpu" and len(set(device_map.values())) > 1
            fill = std if on_cpu or quantized else None
            out[name] = LazyTensor(tuple(t.shape), t.dtype, "cpu" if quantized else where, fill)
    return out


def random_device_map(
    meta: Any, device: torch.device, placement: str | None, max_memory: dict[int | str, int] | None
) -> dict[str, str]:
    """The module map: all on `device`, or where from_pretrained would put each module
    for `placement` (auto, balanced, ...) and `max_memory`."""
    if placement is None:
        return {"": str(device)}
    device_map = infer_device_map(meta, placement, max_memory)
    on_disk = [name for name, where in device_map.items() if where == "disk"]
    if on_disk:
        raise UsageError(
            f"--max-memory cannot hold the model: {len(on_disk)} modules ({on_disk[0]}, ...) "
            "would go to disk; give the GPUs or the CPU more",
            field="max_memory",
        )
    return device_map


def load_random(
    config: Any,
    device: torch.device,
    dtype: torch.dtype,
    attn: str,
    placement: str | None = None,
    max_memory: dict[int | str, int] | None = None,
    quantization_config: Any = None,
) -> Any:
    """The model, on `device` (or placed as `placement` and `max_memory` say), as
    from_pretrained of a checkpoint loads it; random values. `quantization_config`
    (transformers' BitsAndBytesConfig, TorchAoConfig): quantized as it loads."""
    std = float(getattr(config, "initializer_range", 0.02) or 0.02)
    meta = meta_model(config, dtype)
    device_map = random_device_map(meta, device, placement, max_memory)
    quantized = quantization_config is not None
    tensors = checkpoint_tensors(meta, device_map, std, quantized)
    del meta
    extra = {"quantization_config": quantization_config} if quantized else {}
    model = model_class(config).from_pretrained(
        None,
        config=config,
        state_dict=tensors,
        dtype=dtype,
        attn_implementation=attn,
        device_map={name: _accelerate_device(d) for name, d in device_map.items()},
        **extra,
    )
    if not quantized:  # a quantized build's values came with its tensors
        randomize(model, std)
    return model


def _accelerate_device(device: str) -> int | str:
    """cuda:N as accelerate's N; cpu (and mps) as they are."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else device


@torch.no_grad()
def randomize(model: Any, std: float) -> None:
    """Random values in every parameter, in place: no allocation, and no GEMM runs on
    uninitialised memory (zeros run faster than real weights). A quantized parameter
    (integer storage, or a tensor subclass such as torchao's) is left as it is."""
    for param in model.parameters():  # a tied parameter appears once
        if type(param.data) is torch.Tensor and param.is_floating_point():
            param.normal_(0.0, std)
