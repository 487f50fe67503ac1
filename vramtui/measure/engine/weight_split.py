"""What a loaded model's weights are made of, counted from the tensors themselves.

A quantized parameter is not one tensor of `numel x element_size` bytes:
bitsandbytes' Params4bit packs two weights a byte and keeps its quantization state
(absmax, the 16-entry quant_map, and with double quantization the absmax's own
absmax and code) beside it; Int8Params keeps a float per row (SCB); torchao's
tensor subclasses hold their integer data (`qdata`) and scales or zero points as
inner tensors. Each storage is counted once (a tied lm_head, SCB shared with the
layer's state), in one of three parts: packed quantized weights, quantization
state, and what stays in full precision (by kind: embeddings, lm_head, norms, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from vramtui.measure.events import WeightSplit

PACKED_NAMES = ("qdata", "int_data", "packed_weight")  # torchao's quantized data


def _plain(t: Any) -> bool:
    return type(t) in (torch.Tensor, torch.nn.Parameter) and not hasattr(t, "quant_state")


def _nbytes(t: torch.Tensor) -> int:
    return int(t.numel() * t.element_size())


def leaves(t: Any) -> Iterator[torch.Tensor]:
    """The plain tensors that hold a tensor's bytes: itself, or a tensor subclass's inner
    tensors (torchao's weights, optimum-quanto's packed KV states), recursively."""
    if _plain(t) or not hasattr(t, "__tensor_flatten__"):
        yield t
        return
    names, _ = t.__tensor_flatten__()
    for name in names:
        inner = getattr(t, name, None)
        if inner is not None:
            yield from leaves(inner)


def stored_bytes(t: Any, device: Any = None) -> int:
    """Bytes a tensor holds as stored (on `device`; anywhere if None)."""
    return sum(_nbytes(leaf) for leaf in leaves(t) if device is None or leaf.device == device)


def _four_bit_state(param: Any) -> Iterator[torch.Tensor]:
    """A Params4bit's quant state: absmax and code, with double quantization the
    quantized absmax's own absmax, code and offset."""
    state = param.quant_state
    for owner in (state, getattr(state, "state2", None)):
        if owner is None:
            continue
        for name in ("absmax", "code", "offset"):
            t = getattr(owner, name, None)
            if isinstance(t, torch.Tensor):
                yield t


def _subclass_parts(t: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """A torchao tensor subclass's inner tensors, as ("packed" | "state", tensor)."""
    names, _ = t.__tensor_flatten__()
    for name in names:
        inner = getattr(t, name, None)
        if inner is None:
            continue
        if hasattr(inner, "__tensor_flatten__") and not _plain(inner):
            yield from _subclass_parts(inner)
        else:
            yield ("packed" if name in PACKED_NAMES else "state"), inner


def _quantized_parts(param: Any) -> Iterator[tuple[str, torch.Tensor]]:
    data = param.data if isinstance(param, torch.nn.Parameter) else param
    if getattr(param, "quant_state", None) is not None:  # bitsandbytes 4-bit
        yield "packed", data
        for t in _four_bit_state(param):
            yield "state", t
    elif param.dtype == torch.int8 and hasattr(param, "SCB"):  # bitsandbytes LLM.int8
        yield "packed", data
        if isinstance(param.SCB, torch.Tensor):
            yield "state", param.SCB
    elif hasattr(data, "__tensor_flatten__") and not _plain(data):  # torchao
        yield from _subclass_parts(data)


def logical_numel(param: Any) -> int:
    """Parameters the tensor stands for: a packed 4-bit tensor holds two a byte."""
    state = getattr(param, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(math.prod(state.shape))
    return int(param.numel())


def _kind(module: torch.nn.Module, head: Any) -> str:
    """What a module kept in full precision is: embeddings, lm_head, norms, experts (a
    mixture of experts' weights as 3-D parameters, which the quantizers leave as they
    are), router, linear, other."""
    name = type(module).__name__.lower()
    if module is head:
        return "lm_head"
    if isinstance(module, torch.nn.Embedding):
        return "embeddings"
    for kind in ("norm", "expert", "router"):
        if kind in name:
            return kind + "s"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    return "other"


class _Counter:
    def __init__(self) -> None:
        self.seen: set[Any] = set()
        self.split = WeightSplit()

    def first(self, t: torch.Tensor) -> bool:
        """Whether this storage is counted now (not before)."""
        key = id(t) if t.device.type == "meta" else (t.device, t.data_ptr())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def parameter(self, param: Any, kind: str) -> None:
        parts = list(_quantized_parts(param))
        if not parts:
            if self.first(param):
                self.split.params += param.numel()
                self.split.full_bytes += _nbytes(param)
                self.split.kept[kind] = self.split.kept.get(kind, 0) + _nbytes(param)
            return
        if id(param) in self.seen:
            return
        self.seen.add(id(param))
        n = logical_numel(param)
        self.split.params += n
        self.split.quantized_params += n
        for part, t in parts:
            if not self.first(t):
                continue
            if part == "packed":
                self.split.packed_bytes += _nbytes(t)
            else:
                self.split.state_bytes += _nbytes(t)

    def buffer(self, buf: torch.Tensor) -> None:
        if buf.device.type != "meta" and self.first(buf):
            self.split.full_bytes += _nbytes(buf)
            self.split.kept["buffers"] = self.split.kept.get("buffers", 0) + _nbytes(buf)


def weight_split(model: Any) -> WeightSplit:
    """The model's parameters and buffers split into packed, state and full precision.
    A parameter offloaded to the CPU by accelerate stands on the meta device in the
    model (its bytes are in accelerate's weights map): counted by the parameter."""
    counter = _Counter()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in model.modules():
        for param in module.parameters(recurse=False):
            counter.parameter(param, _kind(module, head))
    for buf in model.buffers():
        counter.buffer(buf)
    return counter.split
