"""An approximate training trace from a config's numbers alone, where none is cached.

Pure Python, no torch: `vramtui estimate --workload` and `vramtui fit` answer at once
for any model of the families config_weights.py writes out, where the traced step
(step_tracer.py) takes a child process and seconds to minutes. The parameters are
exact (config_params.py); the two steps' events are written block by block
(config_blocks.py: what each decoder layer keeps for backward and holds for a moment,
as the traced steps of Llama, Qwen 2 and 3, Phi-3, GPT-NeoX and OPT allocate them),
in the order the traced loop runs them:

- forward: the embedding's output, each block's saved tensors (or, under activation
  checkpointing, only each layer's input; the block's tensors alive for a moment),
  the final norm, the logits, the loss's float32 copy and its log-softmax;
- backward: the loss's gradients, the head's, then each block from the last (under
  checkpointing first recomputed), its parameters' gradients allocated, its saved
  tensors freed;
- optimizer: torch's AdamW (foreach, as on a GPU) allocates its two states per
  trained parameter on the first step and a square-root list the size of the trained
  parameters on every step; SGD nothing; the others are not traced (replay.py adds
  their states from optimizer_states.py);
- zero_grad: every gradient freed.

Every figure from this module is an approximation: the callers say so.
"""

from __future__ import annotations

from vramtui.predict.training.config_blocks import Block, Dims, blocks, head_blocks, packed
from vramtui.predict.training.config_params import ConfigParams, config_params
from vramtui.predict.training.optimizer_states import Param
from vramtui.predict.training.trace import Mark, TrainShape, TrainTrace

TRACED_OPTIMIZERS = ("adamw", "sgd")


class Events:
    """Allocation events as the tracer writes them: a size allocates, -(i + 1) frees
    allocation i."""

    def __init__(self) -> None:
        self.events: list[int] = []
        self.marks: list[Mark] = []
        self._count = 0

    def alloc(self, nbytes: int) -> int:
        if nbytes <= 0:
            return -1
        self.events.append(nbytes)
        self._count += 1
        return self._count - 1

    def free(self, index: int) -> None:
        if index >= 0:
            self.events.append(-(index + 1))

    def moment(self, *sizes: int) -> None:
        """Tensors alive together for a moment, then freed."""
        held = [self.alloc(size) for size in sizes]
        for index in reversed(held):
            self.free(index)

    def mark(self, step: int, phase: str) -> None:
        self.marks.append(Mark(step, phase, len(self.events)))


def _forward(ev: Events, layers: list[Block], head: list[Block], ckpt: bool) -> list[list[int]]:
    """The forward's events; returns each block's saved allocations (a checkpointed
    block: its input only)."""
    kept: list[list[int]] = []
    for block in layers:
        if ckpt and block.checkpointed:
            saved = [ev.alloc(size) for size in block.saved]
            ev.moment(*block.transient)
            for index in reversed(saved):
                ev.free(index)
            kept.append([ev.alloc(block.carry)])
        else:
            kept.append([ev.alloc(size) for size in block.saved])
            ev.moment(*block.transient)
    for block in head:
        saved = [ev.alloc(size) for size in block.saved]
        held = [ev.alloc(size) for size in block.transient]
        saved += [ev.alloc(size) for size in block.late]
        for index in reversed(held):
            ev.free(index)
        kept.append(saved)
    return kept


def _backward(
    ev: Events, every: list[Block], kept: list[list[int]], ckpt: bool, grads: Grads
) -> None:
    for block, saved in zip(reversed(every), reversed(kept), strict=True):
        recomputed = []
        if ckpt and block.checkpointed:
            recomputed = [ev.alloc(size) for size in block.saved]
        ev.moment(*block.backward)
        new = []
        for param in reversed(block.params):
            if param.name in grads.names:
                ev.moment(param.nbytes)  # a second gradient, added in place
            elif param.trainable:
                grads.names.add(param.name)
                new.append(param.nbytes)
        grads.held += [ev.alloc(size) for size in packed(tuple(new))]
        for index in reversed(recomputed):
            ev.free(index)
        for index in reversed(saved):
            ev.free(index)


class Grads:
    """The gradients a step has made: their parameters, and their allocations (the small
    pool's packed, as the blocks' tensors are)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.held: list[int] = []


def _optimizer(ev: Events, optim: str, step: int, trained: list[Param]) -> None:
    """AdamW's states (step 1) and its step's square roots, one like each trained
    parameter (the small pool's packed)."""
    if optim != "adamw":
        return
    sizes = tuple(param.nbytes for param in trained)
    if step == 1:
        for size in packed(tuple(s for s in sizes for _ in range(2))):
            ev.alloc(size)
    roots = [ev.alloc(size) for size in packed(sizes)]
    for index in roots:
        ev.free(index)


def config_train_trace(config: dict[str, object], shape: TrainShape) -> TrainTrace | None:
    """Two training steps of `shape`'s recipe on `config`, written from its numbers
    (None: a family whose layout is not written here, or eager attention, whose score
    matrices are not)."""
    if shape.attn != "sdpa":
        return None
    inventory = config_params(
        dict(config), shape.method, shape.dtype, shape.lora_r, shape.lora_targets
    )
    if inventory is None:
        return None
    dims = Dims.of(dict(config), shape, inventory)
    layers = blocks(dims, inventory)
    if layers is None:
        return None
    head = head_blocks(dims, inventory)
    ckpt = shape.grad_checkpointing
    ev = Events()
    trained = [p for p in inventory.params if p.trainable]
    for step in (1, 2):
        grads = Grads()
        for _ in range(min(shape.grad_accum, 2)):
            ev.mark(step, "forward")
            kept = _forward(ev, layers, head, ckpt)
            ev.mark(step, "backward")
            _backward(ev, [*layers, *head], kept, ckpt, grads)
        ev.mark(step, "optimizer")
        _optimizer(ev, shape.optim, step, trained)
        ev.mark(step, "zero_grad")
        for index in grads.held:
            ev.free(index)
    ev.mark(3, "end")
    return _trace(inventory, ev, shape)


def _trace(inventory: ConfigParams, ev: Events, shape: TrainShape) -> TrainTrace:
    return TrainTrace(
        model_class="(from the config's numbers)",
        params=inventory.params,
        buffers=inventory.buffers,
        events=tuple(ev.events),
        marks=tuple(ev.marks),
        optimizer_traced=shape.optim in TRACED_OPTIMIZERS,
    )
