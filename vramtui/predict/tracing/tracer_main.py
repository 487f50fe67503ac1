"""Run a model's own code on the meta device and count what it allocates.

The one module of predict/ that imports torch, and only in a child process
(`python -m vramtui.predict.tracing.child`, a request as JSON on stdin, the
trace as JSON on stdout; tracing/traces.py starts it and caches the answer).

The model is built on the meta device, so nothing is allocated and any size
traces in a second. A TorchDispatchMode sees every tensor each aten op
returns; its storage is counted (rounded as the device's allocator rounds it)
until Python frees it, exactly as the caching allocator would see it. So the
live bytes and their peak through a prefill and through decode steps are
those the real code allocates, for any architecture, with no model written
by hand. Two things the meta device cannot do are stood in for:
- `scaled_dot_product_attention` decomposes into the math kernel there (a full
  score matrix); on CUDA and the CPU the fused kernels keep none: each call
  leaves its output and a float32 log-sum-exp per query row, nothing else.
- a grouped matmul (the experts of a mixture) has a meta check stricter than
  the kernels (bfloat16 only): its output is made directly.
- a softmax of a float16 tensor asked in float32 (eager attention's scores) reads
  the half input and writes float32 in one CUDA kernel (at::softmax's
  half_to_float); on meta and the CPU it first makes a float32 copy of its input,
  which a CUDA trace must not count: a whole score matrix at a long prompt.
A model whose code reads tensor values cannot run on meta: the trace says so,
and the estimate with it.
"""

from __future__ import annotations

import json
import sys
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from vramtui.errors import UsageError
from vramtui.models.architecture import natural_key
from vramtui.models.hf import first_line, meta_model, transformers_config
from vramtui.predict.tracing.inventory import linear_inventory

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
CUDA_BLOCK = 512  # the CUDA caching allocator rounds every request up to 512 B


class Tracker(TorchDispatchMode):
    """Live bytes of the storages ops return, and their peak since `mark()`."""

    def __init__(self, round_to: int) -> None:
        super().__init__()
        self.round_to = round_to
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        # While recording (`record`): each request in order, its bytes (the storage's own
        # size, unrounded; an empty tensor takes nothing), or -(i + 1): request i freed.
        self.events: list[int] | None = None
        self._index: dict[int, int] = {}
        self._allocs = 0

    def block(self, nbytes: int) -> int:
        if self.round_to <= 1 or nbytes == 0:
            return nbytes
        return -(-nbytes // self.round_to) * self.round_to

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._sizes:
            return  # a view, or an op that wrote in place
        size = self.block(storage.nbytes())
        self._sizes[key] = size
        weakref.finalize(storage, self._release, key)
        self.live += size
        self.peak = max(self.peak, self.live)
        if self.events is not None and storage.nbytes():
            self._index[key] = self._allocs
            self._allocs += 1
            self.events.append(storage.nbytes())

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
        index = self._index.pop(key, None)
        if index is not None and self.events is not None:
            self.events.append(-(index + 1))

    def record(self) -> list[int]:
        """Record every request and free from now on (the list grows as they come)."""
        self.events, self._index, self._allocs = [], {}, 0
        return self.events

    def request_of(self, tensor: torch.Tensor) -> int:
        """The recorded request that made `tensor`'s storage (-1: none)."""
        return self._index.get(id(tensor.untyped_storage()), -1)

    def known(self, tensors: Any) -> None:
        """Storages that exist before tracing (weights, inputs): views of them are not
        new allocations."""
        for tensor in tensors:
            self._sizes.setdefault(id(tensor.untyped_storage()), 0)

    def mark(self) -> int:
        """Start a new peak from what is alive now; returns it."""
        self.peak = self.live
        return self.live

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in pytree.tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf)
        return out


GROUPED_MM = tuple(
    f for f in (getattr(F, "grouped_mm", None), getattr(torch, "_grouped_mm", None)) if f
)


SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax)


def _half_to_float_softmax(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """softmax(x, dim, dtype=float32) of a float16 `x` as CUDA runs it: one kernel from
    the half input to a float32 output, no float32 copy of the input (None: any other
    softmax, which allocates on CUDA as on meta)."""
    at = 3 if func is F.softmax else 2  # F.softmax(input, dim, _stacklevel, dtype)
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dtype = kwargs.get("dtype", args[at] if len(args) > at else None)
    x = args[0] if args else kwargs.get("input")
    if dim is None or dtype is not torch.float32 or not isinstance(x, torch.Tensor):
        return None
    return torch._softmax(x, dim, True) if x.dtype is torch.float16 else None


class Kernels(TorchFunctionMode):
    """Fused kernels as they allocate on a device, where meta has none of its own:
    scaled_dot_product_attention leaves its output and a float32 log-sum-exp (rows
    rounded up to 32, as the CUDA kernels keep them); a grouped matmul (mixture of
    experts) its output, in every dtype (meta's check accepts bfloat16 only); on
    CUDA, a float16 softmax asked in float32 its float32 output alone."""

    def __init__(self, cuda: bool = False) -> None:
        super().__init__()
        self.cuda = cuda

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if self.cuda and func in SOFTMAX:
            out = _half_to_float_softmax(func, args, kwargs or {})
            if out is not None:
                return out
        if func in GROUPED_MM:
            a, b = args[0], args[1]
            return torch.empty((a.shape[0], b.shape[-1]), dtype=a.dtype, device=a.device)
        if func is not F.scaled_dot_product_attention:
            return func(*args, **(kwargs or {}))
        query, _key, value = args[:3]
        batch, heads, rows = query.shape[0], query.shape[1], query.shape[2]
        # the fused kernels write (batch, rows, heads, dim) and return it transposed, so
        # the caller's transpose(1, 2).contiguous() makes no copy
        out = torch.empty(
            (batch, rows, heads, value.shape[-1]), dtype=query.dtype, device=query.device
        ).transpose(1, 2)
        lse = torch.empty(
            (batch, heads, -(-rows // 32) * 32), dtype=torch.float32, device=query.device
        )
        del lse
        return out


@dataclass
class Request:
    config: dict[str, Any]
    dtype: str = "float16"
    attn: str = "sdpa"
    backend: str = "cuda"
    batch: int = 1
    prompt: int = 8
    decode: list[int] = field(default_factory=list)  # cache lengths after a decode step


@dataclass
class StepTrace:
    cached: int  # positions in the cache after the step
    peak: int  # the most the forward had alive above what was alive before it
    kv_before: int  # the cache's bytes before it
    kv: int  # the cache's bytes after it


def _cache_arg(model: Any) -> str:
    """transformers >= 5.2x names the forward's cache `cache` (`past_key_values` before)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_bytes(cache: Any, tracker: Tracker) -> int:
    seen: set[int] = set()
    total = 0
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            storage = tensor.untyped_storage()
            if id(storage) not in seen:
                seen.add(id(storage))
                total += tracker.block(storage.nbytes())
    return total


def _positions(model: Any, ids: torch.Tensor, cached: int) -> dict[str, torch.Tensor]:
    """generate's position_ids, (batch, new) from the mask's cumulative sum, where the
    forward takes them (without them rotary models make cos and sin for one row)."""
    import inspect

    if "position_ids" not in inspect.signature(model.forward).parameters:
        return {}
    batch, new = ids.shape
    start = cached - new
    return {"position_ids": torch.zeros((batch, new), dtype=torch.long, device=ids.device) + start}


def _forward(
    model: Any,
    ids: torch.Tensor,
    cache: Any,
    tracker: Tracker,
    cached: int,
    cuda: bool = False,
    events: bool = False,
) -> tuple[StepTrace, list[int], list[int]]:
    """One forward's trace; `events`: with its requests and frees in order, and the
    requests that made the cache's tensors (each layer's K, then V)."""
    inputs = {"input_ids": ids, **_positions(model, ids, cached)}
    tracker.known(inputs.values())
    recorded: list[int] = []
    with Kernels(cuda), tracker:
        for layer in cache.layers:
            if getattr(layer, "is_initialized", False):
                tracker.track(layer.keys)
                tracker.track(layer.values)
        before = tracker.mark()
        recorded = tracker.record() if events else recorded
        out = model(**inputs, use_cache=True, logits_to_keep=1, **{_cache_arg(model): cache})
        peak = tracker.peak - before
        del out
        tracker.events = None
    layers = cache.layers if events else []
    made = [tracker.request_of(t) for layer in layers for t in (layer.keys, layer.values)]
    return StepTrace(cached, peak, before, _cache_bytes(cache, tracker)), recorded, made


def _prefilled_cache(config: Any, layout: list[dict[str, int]], dtype: Any, cached: int) -> Any:
    """A DynamicCache holding `cached` positions, as decode leaves it (sliding layers
    keep their window less one)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for layer, shape in zip(cache.layers, layout, strict=True):
        held = cached if not shape["window"] else min(cached, shape["window"] - 1)
        dims = (shape["batch"], shape["heads"], held, shape["head_dim"])
        layer.update(
            torch.empty(dims, dtype=dtype, device="meta"),
            torch.empty(dims, dtype=dtype, device="meta"),
        )
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = cached
    return cache


def _layout(cache: Any) -> list[dict[str, int]]:
    out = []
    for layer in cache.layers:
        batch, heads, _, head_dim = layer.keys.shape
        window = int(getattr(layer, "sliding_window", 0) or 0)
        row = batch * heads * head_dim * layer.keys.element_size()
        out.append(
            {"batch": batch, "heads": heads, "head_dim": head_dim, "window": window, "row": row}
        )
    return out


def _weights(model: Any) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(checkpoint tensors in the loader's order, other buffers, parameter count)."""
    persistent = set(model.state_dict())
    seen: set[int] = set()
    tensors: list[tuple[str, int]] = []
    params = 0
    for name, param in model.named_parameters():  # a tied parameter appears once
        tensors.append((name, param.numel() * param.element_size()))
        params += param.numel()
        seen.add(id(param))
    buffers: list[tuple[str, int]] = []
    for name, buffer in model.named_buffers():
        entry = (name, buffer.numel() * buffer.element_size())
        (tensors if name in persistent else buffers).append(entry)
    tensors.sort(key=lambda item: natural_key(item[0]))
    return tensors, buffers, params


def trace(request: Request) -> dict[str, Any]:
    from transformers import DynamicCache

    config = transformers_config(request.config)
    dtype = DTYPES[request.dtype]
    model = meta_model(config, dtype, request.attn).eval()
    tensors, buffers, params = _weights(model)
    cuda = request.backend == "cuda"
    tracker = Tracker(CUDA_BLOCK if cuda else 1)
    ids = torch.zeros((request.batch, request.prompt), dtype=torch.long, device="meta")
    one = torch.zeros((request.batch, 1), dtype=torch.long, device="meta")
    tracker.known([*model.parameters(), *model.buffers(), ids, one])
    cache = DynamicCache(config=config)
    with torch.no_grad():
        prefill, events, made = _forward(model, ids, cache, tracker, request.prompt, cuda, True)
        layout = _layout(cache)
        del cache
        decode = []
        for cached in request.decode:
            past = _prefilled_cache(config, layout, dtype, cached - 1)
            decode.append(_forward(model, one, past, tracker, cached, cuda)[0])
            del past
    text = getattr(config, "get_text_config", lambda: config)()
    return {
        "model_type": config.model_type,
        "model_class": type(model).__name__,
        "params": params,
        "tensors": tensors,
        "buffers": buffers,
        "linears": linear_inventory(model),
        "vocab": int(text.vocab_size),
        "layers": layout,
        "prefill": asdict(prefill),
        "prefill_events": events,
        "prefill_kv": made,
        "decode": [asdict(step) for step in decode],
    }


def serve(handle: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """A tracing child's life: the request as JSON on stdin, `handle`'s answer (or why
    not, in one line) as JSON on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        result: dict[str, Any] = {"ok": True, **handle(request)}
    except UsageError as exc:
        result = {"ok": False, "error": str(exc)}
    except (NotImplementedError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    json.dump(result, sys.stdout)
    return 0


def main() -> int:
    return serve(lambda request: trace(Request(**request)))


if __name__ == "__main__":
    raise SystemExit(main())
