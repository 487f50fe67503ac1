"""Trace training steps of a model's own code and record every allocation and free.

The child process of the training estimate (`python -m
vramtui.predict.training.step_tracer`, a request as JSON on stdin, the trace as JSON on
stdout; trace.py starts it and caches the answer), and the accounting the tests run on
real CPU tensors. The model is built on the meta device, the recipe applied as a run
applies it (recipe.py), and two steps run under a TorchDispatchMode that sees the
storage of every tensor each aten op returns, backward's included: each new storage is
an allocation event, its death (Python frees it) a free event. The loop is the one a
training run runs: per micro-batch `loss = model(input_ids=ids, labels=ids).loss;
loss.backward()`; then `optimizer.step(); optimizer.zero_grad(set_to_none=True)`.

torch's optimizers (AdamW, SGD) run on meta with foreach=True, as on a GPU, so their
states and transients are traced; bitsandbytes' 8-bit AdamW and transformers'
Adafactor cannot run on meta (they read values): their states come from
optimizer_states.py and the step is left out of the trace. Fused attention
(`scaled_dot_product_attention`, which meta decomposes into the math kernel and its
score matrix) is stood in for by what the flash kernels keep: the output and a float32
log-sum-exp forward; the three gradients and float32 accumulators backward. Except
where a GPU runs the math kernel itself: flash attention takes only float16 and
bfloat16, and the memory-efficient kernel no grouped-query heads, so float32 queries
with fewer key/value heads than query heads (QLoRA's, whose norms
`prepare_model_for_kbit_training` casts to float32, so the projections return float32)
keep the float32 score matrix for backward, as meta's decomposition does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

from vramtui.models.hf import meta_model, transformers_config
from vramtui.predict.tracing.tracer_main import CUDA_BLOCK, DTYPES, Tracker, serve
from vramtui.predict.training.recipe import apply_recipe, trainable
from vramtui.predict.training.trace import TrainShape

TRACED_OPTIMIZERS = ("adamw", "sgd")
PHASES = ("forward", "backward", "optimizer", "zero_grad")


class EventTracker(Tracker):
    """The Tracker's live bytes, plus the events: a positive number allocates that
    many bytes (the storage's own size, unrounded), -(i + 1) frees allocation i."""

    def __init__(self, round_to: int) -> None:
        super().__init__(round_to)
        self.events: list[int] = self.record()
        self.marks: list[tuple[int, str, int]] = []  # (step, phase, first event)
        self._stepping = False  # in an optimizer step

    def track(self, tensor: torch.Tensor) -> None:
        if self._stepping and _host_scalar(tensor):
            return
        super().track(tensor)

    def phase(self, step: int, name: str) -> None:
        self.marks.append((step, name, len(self.events)))
        self._stepping = name == "optimizer"


def _host_scalar(tensor: torch.Tensor) -> bool:
    """torch's optimizers count their steps in float32 scalars on the host, whatever
    device they train on: no device memory."""
    return bool(tensor.dim() == 0 and tensor.device.type == "cpu")


class FusedAttention(torch.autograd.Function):
    """What flash attention allocates, as shapes: forward the output and a float32
    log-sum-exp per query row; backward dq, dk, dv and float32 accumulators."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
        batch, heads, rows = q.shape[0], q.shape[1], q.shape[2]
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        lse = torch.empty((batch, heads, rows), dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        q, k, v, _out, _lse = ctx.saved_tensors
        rounded = -(-q.shape[2] // 128) * 128
        softmax_d = torch.empty(
            (q.shape[0], q.shape[1], rounded), dtype=torch.float32, device=q.device
        )
        dq_accum = torch.empty(
            (q.shape[0], rounded, q.shape[1], q.shape[3]), dtype=torch.float32, device=q.device
        )
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        del softmax_d, dq_accum
        return dq, dk, dv


def math_kernel(backend: str, q: torch.Tensor, k: torch.Tensor, enable_gqa: bool) -> bool:
    """Whether a GPU runs scaled_dot_product_attention's math kernel for these inputs:
    no fused kernel takes float32 with grouped-query heads (flash: half precision only;
    memory-efficient: as many key/value heads as query heads). A CPU's flash kernel
    takes float32 and grouped-query heads alike."""
    grouped = enable_gqa and k.shape[-3] != q.shape[-3]
    return backend == "cuda" and q.dtype == torch.float32 and grouped


@contextmanager
def math_attention() -> Iterator[None]:
    """torch's own scaled_dot_product_attention, its math kernel only."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


@contextmanager
def fused_attention(backend: str = "cuda") -> Iterator[None]:
    """scaled_dot_product_attention as the kernels `backend` picks allocate: the fused
    ones' (FusedAttention), or torch's math kernel where a GPU falls back to it
    (math_kernel); for the forward and checkpointing's recomputation alike."""
    original = F.scaled_dot_product_attention

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kw: Any) -> Any:
        if math_kernel(backend, q, k, bool(kw.get("enable_gqa", False))):
            with math_attention():
                return original(q, k, v, *args, **kw)
        return FusedAttention.apply(q, k, v)

    setattr(F, "scaled_dot_product_attention", sdpa)  # noqa: B010 (a module's function)
    try:
        yield
    finally:
        setattr(F, "scaled_dot_product_attention", original)  # noqa: B010


@dataclass(frozen=True)
class Request(TrainShape):
    """A model's config and the recipe and shape to trace it for."""

    config: dict[str, Any] = field(default_factory=dict)


def build(request: Request, device: str = "meta") -> Any:
    """The model to train, built on `device` ("meta", or "cpu" for a real run)."""
    config = transformers_config(request.config)
    dtype = DTYPES[request.dtype]
    if device == "meta":
        model = meta_model(config, dtype, request.attn)
    else:
        from vramtui.models.hf import model_class

        model = model_class(config)._from_config(
            config, dtype=dtype, attn_implementation=request.attn
        )
    if request.method == "qlora":
        from vramtui.predict.training.four_bit import quantize_linears

        quantize_linears(model, torch.bfloat16)
    return apply_recipe(
        model,
        request.method,
        request.grad_checkpointing,
        request.lora_r,
        request.lora_alpha,
        request.lora_targets,
    )


def optimizer(request: Request, params: list[Any]) -> Any | None:
    """torch's optimizer with its defaults, foreach as on a GPU (None: not traceable)."""
    if request.optim == "adamw":
        return torch.optim.AdamW(params, foreach=True)
    if request.optim == "sgd":
        return torch.optim.SGD(params, lr=1e-3, foreach=True)
    return None


def _no_packed_sequences() -> None:
    """transformers looks for packed sequences by reading position ids' values, which
    meta has none of; random ids with positions 0..n-1 are one sequence each."""
    import transformers.masking_utils as masking

    masking.find_packed_sequence_indices = lambda position_ids: None


def run_steps(
    model: Any,
    request: Request,
    tracker: EventTracker,
    steps: int = 2,
    attention: Callable[[], AbstractContextManager[Any]] | None = None,
) -> None:
    """`steps` optimizer steps under the tracker; the first `min(grad_accum, 2)` micro-
    batches of each (later ones allocate as the second does). Attention as
    `fused_attention` has it for the request's backend, unless `attention` says."""
    device = next(model.parameters()).device
    ids = torch.zeros((request.batch, request.seq), dtype=torch.long, device=device)
    params = trainable(model)
    opt = optimizer(request, params)
    tracker.known([*model.parameters(), *model.buffers(), ids])
    context = attention() if attention else fused_attention(request.backend)
    with context, tracker:
        for step in range(1, steps + 1):
            for _ in range(min(request.grad_accum, 2)):
                tracker.phase(step, "forward")
                loss = model(input_ids=ids, labels=ids).loss
                tracker.phase(step, "backward")
                loss.backward()
                del loss
            tracker.phase(step, "optimizer")
            if opt is not None:
                opt.step()
            tracker.phase(step, "zero_grad")
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            else:
                for param in params:
                    param.grad = None
        tracker.phase(steps + 1, "end")


def _params(model: Any) -> list[dict[str, Any]]:
    """Every parameter once: bytes, elements, dtype, trained, 4-bit."""
    out = []
    for name, param in model.named_parameters():
        out.append(
            {
                "name": name,
                "bytes": param.numel() * param.element_size(),
                "numel": param.numel(),
                "shape": list(param.shape),
                "dtype": str(param.dtype).removeprefix("torch."),
                "trainable": bool(param.requires_grad),
                "four_bit": param.dtype == torch.uint8,
            }
        )
    return out


def trace(request: Request) -> dict[str, Any]:
    _no_packed_sequences()
    model = build(request)
    tracker = EventTracker(CUDA_BLOCK if request.backend == "cuda" else 1)
    run_steps(model, request, tracker)
    buffers = [b.numel() * b.element_size() for b in model.buffers()]
    return {
        "model_class": type(model.get_base_model() if hasattr(model, "get_base_model")
                           else model).__name__,
        "params": _params(model),
        "buffers": buffers,
        "events": tracker.events,
        "marks": tracker.marks,
        "optimizer_traced": request.optim in TRACED_OPTIMIZERS,
    }  # fmt: skip


def request_of(data: dict[str, Any]) -> Request:
    """The request's fields (the cache key's versions are not the tracer's business)."""
    known = {f.name for f in fields(Request)}
    return Request(**{k: v for k, v in data.items() if k in known})


def main() -> int:
    return serve(lambda data: trace(request_of(data)))


if __name__ == "__main__":
    raise SystemExit(main())
