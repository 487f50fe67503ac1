"""A profiled program's training steps, on the same step axis as `vramtui train`.

torch's global optimizer step hooks mark the steps; the phases come from hooks that
cost nothing measurable:

- forward: the root module's forward (a module holding parameters an optimizer was
  made with, called from no other module), pre-hook to post-hook;
- backward: the end of forward to the optimizer's pre-hook (the loss and anything the
  program does in between included);
- optimizer: the optimizer's pre-hook to its post-hook;
- zero_grad: the post-hook to the next forward (the last step's runs to the program's
  end).

Nothing is hooked until the program makes an optimizer (torch.optim.Optimizer's
constructor is wrapped), so a program that does not train runs exactly as before. Until
the first optimizer step ends, global module hooks find the root modules (those at
call depth 0 that hold trained parameters); from then on, only those roots carry hooks.
Step 1's parts are counted as `vramtui train` counts them (the weights, every gradient
before optimizer.step(), every optimizer state after it, the bytes saved for backward),
and each step ends as a `TrainStep` event with its phases' peaks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_run import clock
from vramtui.measure.engine.train_run import keep_peak
from vramtui.runspec.train_spec import TRAIN_PHASES

if TYPE_CHECKING:
    from vramtui.measure.script.hooks import Instrument


@dataclass
class ProgramStep:
    """One optimizer step of the program, gathered as it runs."""

    step: int
    t_start: float
    tokens: int = 0
    peaks: dict[str, int | None] = field(default_factory=dict)
    gradient_bytes: int | None = None
    optimizer_state_bytes: int | None = None
    paged_state_bytes: int = 0
    activation_bytes: int | None = None


class TrainWatch:
    """The hooks that put a program's training on the step axis, and their events."""

    def __init__(self, instrument: Instrument) -> None:
        self.it = instrument
        self.optimizers: list[Any] = []
        self.trained: set[int] = set()  # ids of the parameters the optimizers hold
        self.roots: list[Any] = []
        self._inside: set[int] = set()  # ids of every module under a root
        self._root_of: dict[int, bool] = {}  # module id: is it a root (depth-0 calls)
        self._depth = 0
        self._in_optimizer = 0
        self.steps_done = 0
        self.current: ProgramStep | None = None
        self._saved: Any = None  # step 1's saved-tensor counter, while a forward runs
        self._saved_hooks: Any = None
        self._global: list[Any] = []  # the global module hooks, until step 1 ends
        self._handles: list[Any] = []  # optimizer step hooks and the roots' hooks
        self._undo: Callable[[], None] | None = None

    # ---- installing ----------------------------------------------------------------
    def install(self) -> None:
        """Wrap the optimizers' constructor: the hooks go in once one is made."""
        import torch

        owner = torch.optim.Optimizer
        original = owner.__dict__["__init__"]

        @functools.wraps(original)
        def init(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            self.made(optimizer)

        setattr(owner, "__init__", init)  # noqa: B010 - put back by uninstall()
        self._undo = lambda: setattr(owner, "__init__", original)

    def uninstall(self) -> None:
        if self._saved_hooks is not None:  # a step-1 forward that raised: counting ends
            self._saved_hooks.__exit__(None, None, None)
            self._saved_hooks = None
        if self._undo is not None:
            self._undo()
            self._undo = None
        for handle in [*self._global, *self._handles]:
            handle.remove()
        self._global.clear()
        self._handles.clear()

    def made(self, optimizer: Any) -> None:
        """An optimizer was made: its parameters are the trained ones."""
        from torch.nn.modules import module as nn_module
        from torch.optim import optimizer as optim_module

        first = not self.optimizers
        self.optimizers.append(optimizer)
        for group in optimizer.param_groups:
            self.trained.update(id(p) for p in group["params"])
        self._root_of.clear()
        if not first:
            return
        self._handles += [
            optim_module.register_optimizer_step_pre_hook(self.on_optimizer_pre),
            optim_module.register_optimizer_step_post_hook(self.on_optimizer_post),
        ]
        if not self.roots:
            self._global += [
                nn_module.register_module_forward_pre_hook(self.on_any_pre),
                nn_module.register_module_forward_hook(self.on_any_post, always_call=True),
            ]

    # ---- finding the roots (until the first optimizer step ends) --------------------
    def _is_root(self, module: Any) -> bool:
        known = self._root_of.get(id(module))
        if known is None:
            known = id(module) not in self._inside and any(
                id(p) in self.trained for p in module.parameters()
            )
            self._root_of[id(module)] = known
        return known

    def on_any_pre(self, module: Any, args: Any) -> None:
        self._depth += 1
        if self._depth == 1 and self._is_root(module):
            if all(module is not r for r in self.roots):
                self.roots.append(module)
                self._inside.update(id(m) for m in module.modules())
            self.forward_begins(module)

    def on_any_post(self, module: Any, args: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._root_of.get(id(module)):
            self.forward_ends(output)

    def hook_roots(self) -> None:
        """Step 1 is over: the global hooks go, and the roots found carry their own."""
        for handle in self._global:
            handle.remove()
        self._global.clear()
        for root in self.roots:
            self._handles += [
                root.register_forward_pre_hook(lambda m, a: self.forward_begins(m)),
                root.register_forward_hook(lambda m, a, out: self.forward_ends(out)),
            ]

    # ---- the phases ----------------------------------------------------------------
    def forward_begins(self, root: Any) -> None:
        import torch

        if not torch.is_grad_enabled():  # an evaluation's forward: not a training step
            return
        it = self.it
        with it._lock:
            if self.current is None or self.it.phase == "zero_grad":
                self._next_step(root)
            self.begin("forward")
            if self.current is not None and self.current.step == 1:
                self._count_saved(root)

    def forward_ends(self, output: Any) -> None:
        it = self.it
        record = self.current
        if record is None or it.phase != "forward":
            return
        with it._lock:
            if self._saved_hooks is not None:
                self._saved_hooks.__exit__(None, None, None)
                self._saved_hooks = None
                record.activation_bytes = max(record.activation_bytes or 0, self._saved.bytes)
            if output is None:  # the forward raised (a global hook is called even then)
                return  # and the phase it failed in stays forward
            record.tokens += tokens_of(output)
            self.sample_here()
            self.begin("backward")

    def on_optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._in_optimizer += 1
        if self._in_optimizer > 1:  # a wrapper's step() calling the optimizer's own
            return
        from vramtui.measure.engine.train_parts import gradient_bytes

        with self.it._lock:
            if self.current is None or self.it.phase == "zero_grad":
                self._next_step(None)
            record = self.current
            assert record is not None
            if record.step == 1:
                params = [p for o in self.optimizers for g in o.param_groups for p in g["params"]]
                record.gradient_bytes = gradient_bytes(params)
            self.begin("optimizer")

    def on_optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._in_optimizer -= 1
        if self._in_optimizer > 0:
            return
        from vramtui.measure.engine.train_parts import optimizer_state_bytes

        with self.it._lock:
            record = self.current
            if record is None:
                return
            self.sample_here()
            if record.step == 1:
                # every optimizer's, each storage once (a wrapper shares its inner's)
                states, paged = optimizer_state_bytes(*self.optimizers)
                record.optimizer_state_bytes, record.paged_state_bytes = states, paged
            self.begin("zero_grad")
            if self._global:
                self.hook_roots()

    # ---- steps ---------------------------------------------------------------------
    def _next_step(self, root: Any) -> None:
        """The step in progress ends; the next starts (the first says what trains)."""
        self.end_step()
        if self.steps_done == 0 and root is not None:
            self._loaded(root)
        self.current = ProgramStep(self.steps_done + 1, clock())
        self.it.token = self.current.step  # a failure says the step it happened in

    def end_step(self) -> None:
        """The step in progress, told as a TrainStep (at the next step, or the end)."""
        record, self.current = self.current, None
        if record is None:
            return
        self.steps_done = record.step
        self.it.token = None
        self.it.emit(
            ev.TrainStep(
                step=record.step, t_start=record.t_start, t_end=clock(), tokens=record.tokens,
                loss=None, phase_peaks=dict(record.peaks),
                gradient_bytes=record.gradient_bytes,
                optimizer_state_bytes=record.optimizer_state_bytes,
                activation_bytes=record.activation_bytes,
                paged_state_bytes=record.paged_state_bytes,
            )
        )  # fmt: skip

    def finish(self) -> None:
        """The program ended: the last step is told, and the phase is the program's."""
        with self.it._lock:
            if self.current is not None:
                self.sample_here()
                self.end_step()

    def _loaded(self, root: Any) -> None:
        from vramtui.measure.engine.train_parts import optimizer_name, parameter_split

        params = next(iter(root.parameters()), None)
        if params is not None:
            self.it.ensure_hello(params.device)
        frozen, trainable, n_frozen, n_trainable = parameter_split(root)
        name = optimizer_name(self.optimizers[0])
        checkpointing = checkpointing_of(root)
        self.it.emit(ev.TrainLoaded(frozen, trainable, n_frozen, n_trainable, name, checkpointing))

    def _count_saved(self, root: Any) -> None:
        from vramtui.measure.engine.train_parts import SavedBytes

        if self._saved is None:
            self._saved = SavedBytes(root)
        self._saved_hooks = self._saved.hooks()
        self._saved_hooks.__enter__()

    # ---- sampling ------------------------------------------------------------------
    def begin(self, phase: str) -> None:
        """A phase starts: said, its peak reset, a sample at its start."""
        self.it.enter(phase)
        if self.it.probe is not None:
            self.it.probe.reset_peak()
        self.sample_here()

    def sample_here(self) -> None:
        """A sample in the phase running; inside a step its peak counts for the phase."""
        it = self.it
        if it.probe is None:
            return
        peak = it.sample(None, it.phase)
        record = self.current
        if record is None or it.phase not in TRAIN_PHASES:
            return
        keep_peak(record.peaks, it.phase, peak, it.probe)


def checkpointing_of(root: Any) -> bool:
    """Whether transformers' activation (gradient) checkpointing is on: the newer name
    first, the older where the newer is not there."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        value = getattr(root, name, None)
        if value is not None:
            return bool(value)
    return False


def tokens_of(output: Any) -> int:
    """The positions a forward's output scored: batch x sequence of its logits (the
    output itself where it is a tensor); a 2-D output counts its rows; else 0."""
    import torch

    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, torch.Tensor):
        logits = output
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
        return 0
    return int(logits.shape[0]) if logits.dim() == 2 else logits.numel() // logits.shape[-1]
