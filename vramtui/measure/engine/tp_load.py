"""One tensor-parallel rank's model: transformers' `tp_plan="auto"` shards it as it loads.

Random weights go through the same loader as a one-device run (random_weights.py):
`from_pretrained(None, state_dict=...)` with lazy tensors standing where a safetensors
checkpoint's slices would. Under a tp_plan transformers reads each tensor the way it
reads a safetensors slice: it asks its shape (`get_shape()`), computes this rank's
share, and takes only that slice (`tensor[rows, cols]`). `LazySlice` allocates exactly
that slice, so each rank allocates what a sharded checkpoint load allocates there.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from vramtui.errors import UsageError
from vramtui.measure.engine.random_weights import LazyTensor, checkpoint_tensors
from vramtui.models.hf import meta_model, model_class

SAFETENSORS_DTYPES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
}


class LazySlice(LazyTensor):
    """A lazy checkpoint tensor that hands out slices as a safetensors slice does."""

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def get_dtype(self) -> str:
        """The dtype as safetensors names it (some transformers releases ask)."""
        return SAFETENSORS_DTYPES[self.dtype]

    def __getitem__(self, index: object) -> torch.Tensor:
        shape = torch.empty(self.shape, dtype=self.dtype, device="meta")[index].shape
        return torch.empty(shape, dtype=self.dtype, device=self.device)


def tp_plan_of(meta: Any) -> dict[str, str]:
    """The model's tensor parallel plan as transformers resolves it (empty: none)."""
    return dict(getattr(meta, "_tp_plan", None) or {})


def refuse_without_plan(config: Any, meta: Any) -> None:
    if not tp_plan_of(meta):
        import transformers

        from vramtui.predict.tp_shard import no_plan

        raise UsageError(
            f"--tp: {no_plan(config.model_type, transformers.__version__)}", field="tp"
        )


def load_sharded(config: Any, device: torch.device, dtype: torch.dtype, attn: str) -> Any:
    """This rank's share of the model, loaded as a sharded checkpoint is; random values."""
    std = float(getattr(config, "initializer_range", 0.02) or 0.02)
    meta = meta_model(config, dtype)
    refuse_without_plan(config, meta)
    tensors = {
        name: LazySlice(lazy.shape, lazy.dtype, str(device))
        for name, lazy in checkpoint_tensors(meta, {"": str(device)}).items()
    }
    del meta
    model = from_pretrained_tp(
        model_class(config),
        None,
        device,
        config=config,
        state_dict=tensors,
        dtype=dtype,
        attn_implementation=attn,
    )
    randomize_local(model, std)
    return model


def from_pretrained_tp(cls: Any, path: str | None, device: torch.device, **kwargs: Any) -> Any:
    """`cls.from_pretrained(path, tp_plan="auto", ...)`: the argument transformers 5.x
    takes (newer releases also take it as distributed_config, and warn), at two ranks
    or more (at one, transformers applies no plan and places nothing: a rank builds its
    model as a one-device run does, tp_rank.py). The model is then checked to be on the
    rank's device."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tp_plan.*", category=FutureWarning)
        model = cls.from_pretrained(path, tp_plan="auto", **kwargs)
    check_placed(model, device)
    return model


def check_placed(model: Any, device: torch.device) -> None:
    """Every parameter's local part on the rank's device (UsageError naming the first
    that is not: a run measured on the wrong device would be no measurement)."""
    want = torch.device(device)
    for name, param in model.named_parameters():
        got = local(param).device
        if got.type != want.type or (want.index is not None and got.index != want.index):
            raise UsageError(f"--tp: transformers placed {name} on {got}, not {want}", field="tp")


def local(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) parameter's part on this rank; any other tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


@torch.no_grad()
def randomize_local(model: Any, std: float) -> None:
    """Random values in this rank's part of every parameter, in place."""
    for param in model.parameters():
        part = local(param)
        if part.is_floating_point():
            part.normal_(0.0, std)


def local_tensors(model: Any) -> tuple[int, int]:
    """(parameters, parameter and buffer bytes) this rank holds, each storage once."""
    seen: set[int] = set()
    params = size = 0
    for p in model.parameters():
        part = local(p)
        if part.data_ptr() in seen:
            continue
        seen.add(part.data_ptr())
        params += part.numel()
        size += part.numel() * part.element_size()
    for b in model.buffers():
        part = local(b)
        if part.data_ptr() not in seen:
            seen.add(part.data_ptr())
            size += part.numel() * part.element_size()
    return params, size


def build_tp(spec: Any, device: torch.device, dtype: str) -> Any:
    """The BuiltModel of this rank: its share of the model the spec names, and the
    parameters and bytes this rank holds."""
    from vramtui.measure.engine.model import TORCH_DTYPES, BuiltModel, _config_for, _load_error

    torch_dtype = TORCH_DTYPES[dtype]
    try:
        if spec.source == "checkpoint":
            from transformers import AutoConfig, AutoModelForCausalLM

            config = AutoConfig.from_pretrained(spec.path, local_files_only=not spec.allow_download)
            refuse_without_plan(config, meta_model(config, torch_dtype))
            model = from_pretrained_tp(
                AutoModelForCausalLM,
                spec.path,
                device,
                dtype=torch_dtype,
                attn_implementation=spec.attn,
                use_safetensors=None if spec.allow_pickle else True,
                local_files_only=not spec.allow_download,
            )
        else:
            model = load_sharded(_config_for(spec), device, torch_dtype, spec.attn)
    except (ValueError, KeyError, OSError) as exc:
        raise _load_error(spec, exc) from None
    if spec.prompt:
        raise UsageError("--prompt with --tp: use --prompt-tokens", field="prompt")
    model.eval()
    params, size = local_tensors(model)
    return BuiltModel(model, None, params, size)
