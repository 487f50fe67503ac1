"""What a training run is made of, inside the engine: the model made trainable as the
recipe says (checkpointing, adapters), the optimizer, and the bytes each part holds,
counted from the tensors themselves.

Only the libraries' own calls: transformers' activation (gradient) checkpointing, peft's
LoraConfig / get_peft_model / prepare_model_for_kbit_training, torch's and transformers'
and bitsandbytes' optimizers, with their defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from vramtui.runspec.train_spec import TrainSpec


def enable_checkpointing(model: Any) -> None:
    """transformers' own activation checkpointing, with its defaults (the older name on
    releases that have only that)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is None:
        enable = model.gradient_checkpointing_enable
    enable()


def make_trainable(model: Any, spec: TrainSpec) -> Any:
    """The model as the recipe trains it: full (every parameter), or LoRA adapters on a
    frozen base (QLoRA's base prepared by peft first). Checkpointing is set on the base,
    before the adapters."""
    model.train()
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.grad_checkpointing
        )
    elif spec.grad_checkpointing:
        enable_checkpointing(model)
    if not spec.adapters:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=0.0,
        target_modules=spec.targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def make_optimizer(name: str, params: list[Any]) -> Any:
    """The optimizer --optim names, with its library's defaults."""
    if name == "adamw":
        return torch.optim.AdamW(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params)
    import bitsandbytes as bnb

    if name == "adamw-8bit":
        return bnb.optim.AdamW8bit(params)
    if name == "paged-adamw-8bit":
        return bnb.optim.PagedAdamW8bit(params)
    raise ValueError(f"unknown optimizer {name!r}")


def optimizer_name(optimizer: Any) -> str:
    cls = type(optimizer)
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


def _storage(t: torch.Tensor) -> tuple[tuple[str, int], int]:
    """(a key for the storage a tensor views, its bytes); a tensor subclass without one
    plain storage (a wrapper) stands for itself, with its elements' bytes."""
    try:
        storage = t.untyped_storage()
        return (str(t.device), storage.data_ptr()), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return (str(t.device), id(t)), t.numel() * t.element_size()


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return _storage(t)[0]


def tensor_bytes(tensors: Iterable[Any], seen: set[tuple[str, int]] | None = None) -> int:
    """Bytes the tensors hold, each storage once (a tied or shared one, or a view)."""
    seen = set() if seen is None else seen
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        key, size = _storage(t)
        if key in seen:
            continue
        seen.add(key)
        total += size
    return total


def parameter_split(model: Any) -> tuple[int, int, int, int]:
    """(frozen bytes, trainable bytes, frozen count, trainable count): parameters with
    and without requires_grad, buffers with the frozen ones; each storage once."""
    seen: set[tuple[str, int]] = set()
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    frozen = [p for p in params if not p.requires_grad]
    trainable_bytes = tensor_bytes(trainable, seen)
    frozen_bytes = tensor_bytes([*frozen, *model.buffers()], seen)
    return (
        frozen_bytes,
        trainable_bytes,
        sum(p.numel() for p in frozen),
        sum(p.numel() for p in trainable),
    )


def gradient_bytes(params: Iterable[Any]) -> int:
    return tensor_bytes(p.grad for p in params if p.grad is not None)


def optimizer_state_bytes(*optimizers: Any) -> tuple[int, int]:
    """(every tensor the optimizer keeps per parameter: moments, steps, 8-bit blocks'
    quantization constants; of those, the ones bitsandbytes pages in CUDA managed
    memory, outside torch's allocator)."""
    states = [t for o in optimizers for state in o.state.values() for t in state.values()]
    paged = [t for t in states if getattr(t, "is_paged", False)]
    return tensor_bytes(states), tensor_bytes(paged)


class SavedBytes:
    """torch's saved-tensor hooks around a forward: the bytes autograd keeps for
    backward, each storage once, parameters left out. The hooks hand every tensor back
    as it is: they hold nothing and change nothing."""

    def __init__(self, model: Any) -> None:
        self._params = {_storage_key(p) for p in model.parameters() if p.device.type != "meta"}
        self._seen: set[tuple[str, int]] = set()
        self.bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            key, size = _storage(t)
            if key not in self._params and key not in self._seen:
                self._seen.add(key)
                self.bytes += size
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self) -> Any:
        self._seen.clear()
        self.bytes = 0
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks (the longest ModuleList), sampled after each."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    longest = max(lists, key=len, default=None)
    return list(longest) if longest is not None else []


def random_batches(spec: TrainSpec, vocab: int) -> list[torch.Tensor]:
    """One micro-batch of random ids per forward of the run, seeded (CPU)."""
    generator = torch.Generator(device="cpu").manual_seed(spec.base.seed)
    shape = (spec.base.batch, spec.seq)
    count = spec.steps * spec.grad_accum
    return [torch.randint(4, vocab, shape, generator=generator) for _ in range(count)]
