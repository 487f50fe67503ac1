"""The engine's training run: build the model as for generation, make it trainable as
the recipe says, and run N optimizer steps on random ids, sampled inside each step.

Each step: K forward/backward passes (--grad-accum), optimizer.step(),
optimizer.zero_grad(set_to_none=True). Samples are taken at every phase boundary and
after each decoder layer (a forward hook, and a hook on that layer's output gradient in
backward), so the saw-tooth of activations filling and draining shows; each phase's
peak is kept (the probe's peak is reset as a phase starts). The bytes of the parts
(trainable and frozen weights, gradients, optimizer states, activations saved for
backward) are counted from the tensors themselves.

Sampling must not slow the step: a sample reads the allocator's counters (host-side, no
device synchronisation); the samples inside a phase go out in one write as the phase
ends; the device is synchronised only at a step's edges (its time, as a plain loop
measures it); and the parts are counted in step 1 only (saved-tensor hooks, every
gradient and optimizer state walked), since every step runs the same graph on the same
shapes and step 1 stands apart anyway (it creates the optimizer's states).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_run import Engine, clock, loaded_event
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing import faults as test_faults

# the longest a sample is held before it is written (a tenth of a second: the live
# view's pace)
HOLD_S = 0.1


@dataclass
class StepRecord:
    """What one optimizer step measured, gathered as it runs."""

    step: int
    t_start: float
    peaks: dict[str, int | None] = field(default_factory=dict)
    activation_bytes: int | None = None
    forward_growth: int | None = None
    loss: float | None = None


class TrainEngine(Engine):
    """The engine, training: its RunSpec is the recipe's base model."""

    def __init__(self, train: TrainSpec, write: Callable[[str], object]) -> None:
        super().__init__(train.base, write)
        self.train = train
        self._record: StepRecord | None = None
        self.faults = test_faults.from_environment()
        self._held: list[str] = []  # sample lines of the phase running, not yet written
        self._held_since = 0.0  # the first held sample's time

    # ---- the wire ------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        """Samples inside a training phase are held and written in one go with the next
        other event (a phase's start, a step's end, a failure), or once the first held
        is HOLD_S old (a long phase still shows live): one write a phase, not one a
        layer; none is lost, since every way out emits an event."""
        if isinstance(event, ev.Sample) and self._record is not None:
            if not self._held:
                self._held_since = event.t
            self._held.append(ev.encode(event) + "\n")
            if event.t - self._held_since >= HOLD_S:
                self.flush()
            return
        self.flush()
        super().emit(event)

    def flush(self) -> None:
        """Write the samples held, in order."""
        if self._held:
            held, self._held = self._held, []
            self._write("".join(held))

    # ---- sampling ------------------------------------------------------------------
    def sample_here(self) -> None:
        """A sample in the phase running; its peak counts towards the phase's."""
        peak = self.sample(None, self.phase)
        record = self._record
        if record is None:
            return
        keep_peak(record.peaks, self.phase, peak, self.probe)

    def begin(self, phase: str) -> None:
        """A phase starts: said, its peak reset, a sample at its start."""
        self.enter(phase)
        self.probe.reset_peak()
        self.sample_here()

    def hook_layers(self, model: Any) -> list[Any]:
        """A sample after each decoder layer's forward, and when its output's gradient
        is reached in backward."""
        from vramtui.measure.engine.train_parts import decoder_layers

        def on_grad(grad: Any) -> None:
            self.sample_here()

        def after_forward(module: Any, args: Any, output: Any) -> None:
            self.sample_here()
            hidden = output[0] if isinstance(output, tuple) else output
            if self.phase == "forward" and getattr(hidden, "requires_grad", False):
                hidden.register_hook(on_grad)

        return [layer.register_forward_hook(after_forward) for layer in decoder_layers(model)]

    # ---- the run -------------------------------------------------------------------
    def load_and_generate(self, device: Any, dtype: str) -> int:
        """What `Engine.run` does once the device is set up: here, load and train."""
        self.enter("load")
        self.probe.reset_peak()
        t_load = clock()
        from vramtui.measure.engine.train_base import base_model
        from vramtui.measure.engine.train_parts import (
            make_optimizer,
            make_trainable,
            optimizer_name,
            parameter_split,
            random_batches,
        )

        built = base_model(self.spec, device, dtype)
        model = make_trainable(built.model, self.train)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.train.optim, params)
        load_s = clock() - t_load
        self.sample(None, "load")
        self.emit(loaded_event(built, dtype, self.train.seq, load_s))
        frozen, trainable, n_frozen, n_trainable = parameter_split(model)
        self.emit(
            ev.TrainLoaded(
                frozen, trainable, n_frozen, n_trainable, optimizer_name(optimizer),
                self.train.grad_checkpointing,
            )
        )  # fmt: skip
        vocab = int(getattr(built.model.config, "vocab_size", 32000))
        batches = random_batches(self.train, vocab)
        handles = self.hook_layers(model)
        t_train = clock()
        steps = range(1, self.train.steps + 1)
        times = [self.train_step(model, optimizer, params, batches, device, s) for s in steps]
        train_s = clock() - t_train
        for handle in handles:
            handle.remove()
        self.enter("done")
        self.emit(self.train_done(times, load_s, train_s))
        return 0

    def train_step(
        self, model: Any, optimizer: Any, params: list[Any], batches: list[Any], device: Any,
        step: int,
    ) -> float:  # fmt: skip
        """One optimizer step, sampled phase by phase; its TrainStep told. Its seconds."""
        from vramtui.measure.engine.train_parts import (
            SavedBytes,
            gradient_bytes,
            optimizer_state_bytes,
        )

        self.token = step  # a failure says the step it happened in
        synchronize(device)
        record = self._record = StepRecord(step, clock())
        counting = step == 1  # the parts, counted once (see the module's docstring)
        saved = SavedBytes(model) if counting else None
        k = self.train.grad_accum
        for micro in range(k):
            ids = batches[(step - 1) * k + micro].to(device)
            self.begin("forward")
            before = self.probe.read()[0]
            with saved.hooks() if saved is not None else contextlib.nullcontext():
                loss = model(input_ids=ids, labels=ids).loss / k
            self.sample_here()
            after = self.probe.read()[0]
            if saved is not None:
                record.activation_bytes = max(record.activation_bytes or 0, saved.bytes)
            if before is not None and after is not None:
                record.forward_growth = max(record.forward_growth or 0, after - before)
            self.begin("backward")
            if self.faults is not None:  # a test's fault: inside this step's backward
                self.faults.at_step(step)
            loss.backward()
            record.loss = (record.loss or 0.0) + float(loss.detach())
            del loss, ids
            self.sample_here()
        grads = gradient_bytes(params) if counting else None
        self.begin("optimizer")
        optimizer.step()
        self.sample_here()
        states, paged = optimizer_state_bytes(optimizer) if counting else (None, 0)
        self.begin("zero_grad")
        optimizer.zero_grad(set_to_none=True)
        self.sample_here()
        synchronize(device)
        self._record = None
        t_end = clock()
        self.emit(
            ev.TrainStep(
                step=step, t_start=record.t_start, t_end=t_end, tokens=self.train.tokens_per_step,
                loss=record.loss, phase_peaks=dict(record.peaks), gradient_bytes=grads,
                optimizer_state_bytes=states, activation_bytes=record.activation_bytes,
                forward_growth_bytes=record.forward_growth, paged_state_bytes=paged,
            )
        )  # fmt: skip
        return t_end - record.t_start

    def train_done(self, times: list[float], load_s: float, train_s: float) -> ev.Done:
        """Done, in a training run's terms: tokens trained; the first step (it creates
        the optimizer's states) apart from the steady steps after it."""
        per_step = self.train.tokens_per_step
        tokens = per_step * len(times)
        steady = sum(times[1:])
        max_alloc = self.probe.max_allocated() if hasattr(self.probe, "max_allocated") else None
        return ev.Done(
            tokens=tokens,
            load_s=load_s,
            prefill_s=times[0] if times else 0.0,
            decode_s=steady,
            generate_s=train_s,
            tokens_per_s=tokens / train_s if train_s > 0 else 0.0,
            decode_tokens_per_s=per_step * (len(times) - 1) / steady if steady > 0 else None,
            max_allocated=max(self.running_max, max_alloc or 0),
        )


def keep_peak(peaks: dict[str, int | None], phase: str, peak: int | None, probe: Any) -> None:
    """A sample's peak counted towards its phase's (a backend without a peak, MPS: the
    reading itself)."""
    if peak is None:
        peak = probe.read()[0]
    known = [v for v in (peak, peaks.get(phase)) if v is not None]
    peaks[phase] = max(known) if known else None


def synchronize(device: Any) -> None:
    """Wait for the device's queued kernels (a step's time is its own); on a CUDA
    device only, where kernels run after the call that queued them returns."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
