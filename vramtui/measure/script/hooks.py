"""vramtui's sampling inside a program it did not write: hooks on transformers.

`Instrument.install()` wraps `GenerationMixin.generate` (every generate() of
every transformers model), `PreTrainedModel.from_pretrained` and
`PreTrainedModel._from_config` (what `AutoModel*.from_config` calls). Each
generate() is recorded as the engine records its own run: a sample after every
step's forward (allocator current, reserved, the peak since the previous step,
reset each step; the KV cache from the cache's own tensors), under a session
token index that runs on across calls, and a `Generation` event when the call
ends. Loads are `load` phases. A thread samples at a steady rate outside
generate(), so the program's whole life is on the graph. A program that trains
(makes a torch optimizer) has its optimizer steps recorded on the training step axis,
phase by phase (`train_hooks.TrainWatch`).

The device is learnt from the program: on a machine with CUDA, the first sample
waits for the program's own CUDA start (or its first model), so vramtui never
creates a CUDA context the program would not have made.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.engine.engine_run import Emitter, clock, hello_event
from vramtui.measure.script.train_hooks import TrainWatch
from vramtui.testing import faults as test_faults

PROGRAM = "program"  # the phase between the program's loads and generate() calls


class Instrument(Emitter):
    """Hooks, a background sampler, and the events they write (one writer lock)."""

    def __init__(self, write: Callable[[str], object], *, hz: float = 20.0) -> None:
        self._lock = threading.RLock()
        super().__init__(self._locked(write))
        self.hz = hz
        self.next_token = 0  # the session's token index of the next step
        self.generations = 0
        self.generating = False
        self.loading = False
        self.load_s = 0.0
        self.timed: list[tuple[float, float, float, int]] = []  # start, first, last step, steps
        self.hello: ev.Hello | None = None
        # where the last exception out of a load or generate() was raised, and which
        self.failed_at: tuple[str, int | None, BaseException] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._undo: list[Callable[[], None]] = []
        self._faults = test_faults.from_environment()
        self.training = TrainWatch(self)  # optimizer steps, once the program makes one

    def _locked(self, write: Callable[[str], object]) -> Callable[[str], None]:
        def locked(line: str) -> None:
            with self._lock:
                write(line)

        return locked

    # ---- the device ----------------------------------------------------------------
    def ensure_hello(self, device: Any) -> None:
        """Say hello and pick the probe, for the first device the program uses."""
        with self._lock:
            if self.hello is not None:
                return
            from vramtui.measure.engine.probes import make_probe

            self.probe = make_probe(device.type, device.index or 0)
            self.hello = hello_event(device, self.probe.source, {})
            self.emit(self.hello)

    def _cuda_started(self) -> Any:
        """The program's CUDA device once it has started CUDA itself, else None."""
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.device("cuda", torch.cuda.current_device())
        return None

    def hello_now_if_cpu(self) -> None:
        """No GPU here at all: the program's memory is its RSS from the first line."""
        import torch

        mps = getattr(torch.backends, "mps", None)
        if not torch.cuda.is_available() and not (mps and mps.is_available()):
            self.ensure_hello(torch.device("cpu"))

    # ---- the steady sampler --------------------------------------------------------
    def start(self) -> None:
        self.enter("start")
        self.hello_now_if_cpu()
        self.enter(PROGRAM)
        self._thread = threading.Thread(target=self._loop, name="vramtui-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = 1.0 / self.hz
        while not self._stop.wait(interval):
            self.tick()

    def tick(self) -> None:
        """One sample outside generate() (generate samples every step itself)."""
        if self.hello is None:
            device = self._cuda_started()
            if device is None:
                return
            self.ensure_hello(device)
        with self._lock:
            if not self.generating and self.probe is not None:
                self.training.sample_here()

    def raised_in(self, exc: BaseException) -> None:
        """A load or generate() raised `exc` here: keep where, and go back to the program."""
        self.failed_at = (self.phase, self.token, exc)
        self.token = None
        self.enter(PROGRAM)

    def where_raised(self, exc: BaseException) -> tuple[str, int | None] | None:
        """The phase and token `exc` (or an exception it was raised from) left a hook at."""
        seen: BaseException | None = exc
        while seen is not None and self.failed_at is not None:
            if seen is self.failed_at[2]:
                return self.failed_at[0], self.failed_at[1]
            seen = seen.__cause__ or seen.__context__
        return None

    def done_event(self) -> ev.Done:
        """The whole program's figures: every generate() call's together."""
        generate_s = sum(last - start for start, _, last, _ in self.timed)
        prefill_s = sum(first - start for start, first, _, _ in self.timed)
        decode_s = sum(last - first for _, first, last, _ in self.timed)
        tokens = sum(steps for *_, steps in self.timed)
        decode_steps = tokens - len(self.timed)
        return ev.Done(
            tokens=tokens,
            load_s=self.load_s,
            prefill_s=prefill_s,
            decode_s=decode_s,
            generate_s=generate_s,
            tokens_per_s=tokens / generate_s if generate_s > 0 else 0.0,
            decode_tokens_per_s=decode_steps / decode_s if decode_s > 0 else None,
            max_allocated=self.running_max,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.uninstall()

    def uninstall(self) -> None:
        """Put transformers' and torch's own methods back."""
        self.training.uninstall()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    # ---- the hooks -----------------------------------------------------------------
    def install(self) -> None:
        from transformers import GenerationMixin, PreTrainedModel

        self._wrap(GenerationMixin, "generate", self.record_generate, classmethod_=False)
        self._wrap(PreTrainedModel, "from_pretrained", self.record_load, classmethod_=True)
        self._wrap(PreTrainedModel, "_from_config", self.record_load, classmethod_=True)
        self.training.install()

    def _wrap(self, owner: type, name: str, record: Callable[..., Any], classmethod_: bool) -> None:
        original = owner.__dict__[name]
        function = original.__func__ if classmethod_ else original

        def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
            return record(function, first, args, kwargs)

        functools.update_wrapper(wrapper, function)  # its name, doc and __wrapped__
        setattr(owner, name, classmethod(wrapper) if classmethod_ else wrapper)
        self._undo.append(lambda: setattr(owner, name, original))

    def record_load(self, function: Callable[..., Any], cls: Any, args: Any, kwargs: Any) -> Any:
        if self.loading or self.generating:  # a load inside a load (or a generate)
            return function(cls, *args, **kwargs)
        with self._lock:
            self.loading = True
            self.enter("load")
            if self.probe is not None:
                self.probe.reset_peak()
        t = clock()
        try:
            model = function(cls, *args, **kwargs)
        except BaseException as exc:
            with self._lock:
                self.raised_in(exc)
            raise
        finally:
            with self._lock:
                self.loading = False
                self.load_s += clock() - t
        self.ensure_hello(_device_of(model))
        with self._lock:
            self.sample(None, "load")
            self.emit(_loaded(model, clock() - t))
            self.enter(PROGRAM)
        return model

    def record_generate(
        self, function: Callable[..., Any], model: Any, args: Any, kwargs: Any
    ) -> Any:
        if self.generating:  # the assistant model's generate() inside assisted decoding
            return function(model, *args, **kwargs)
        self.ensure_hello(_device_of(model))
        call = GenerateCall(self, model, args, kwargs)
        try:
            out = function(model, *args, **call.kwargs)
        except BaseException as exc:
            call.end(None, exc)
            raise
        call.end(out, None)
        return out


class GenerateCall:
    """One recorded generate(): its step hook, its cache watch, its Generation event."""

    def __init__(self, instrument: Instrument, model: Any, args: Any, kwargs: Any) -> None:
        from transformers import LogitsProcessorList

        from vramtui.measure.engine.sampler import CacheWatch, step_sampler

        self.instrument = it = instrument
        self.model = model
        ids = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        shape = tuple(getattr(ids, "shape", ()) or ())
        self.batch = int(shape[0]) if shape else 1
        self.prompt_tokens = int(shape[1]) if len(shape) > 1 else 0
        config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
        self.num_beams = int(kwargs.get("num_beams") or getattr(config, "num_beams", 1) or 1)
        self.cache = CacheWatch(model)
        self.steps = 0
        self.t_first = self.t_last = 0.0
        self.peak: int | None = None
        processors = LogitsProcessorList(list(kwargs.get("logits_processor") or []))
        processors.append(step_sampler(self.on_step, it._faults))
        self.kwargs = {**kwargs, "logits_processor": processors}
        with it._lock:
            it.generating = True
            self.index = it.generations
            it.generations += 1
            self.first = it.next_token
            it.probe.reset_peak()
            self.t_start = clock()
            it.token = self.first
            it.enter("prefill")

    def on_step(self, i: int) -> None:
        it = self.instrument
        with it._lock:
            peak = it.sample(self.first + i, "prefill" if i == 0 else "decode", self.cache.bytes())
            self.steps = i + 1
            self.t_last = clock()
            if i == 0:
                self.t_first = self.t_last
            if peak is not None and (self.peak is None or peak > self.peak):
                self.peak = peak
            if i == 0:
                it.enter("decode")
            it.token = self.first + i + 1

    def end(self, out: Any, raised: BaseException | None) -> None:
        it = self.instrument
        self.cache.remove()
        t_end = clock()
        sequences = getattr(out, "sequences", out)
        length = getattr(sequences, "shape", None)
        generated = int(length[-1]) - self.prompt_tokens if length else self.steps
        model = self.model
        with it._lock:
            it.generating = False
            it.next_token = self.first + self.steps
            if self.steps:
                it.timed.append((self.t_start, self.t_first, self.t_last, self.steps))
            it.emit(
                ev.Generation(
                    index=self.index,
                    first_token=self.first,
                    steps=self.steps,
                    prompt_tokens=self.prompt_tokens,
                    batch=self.batch,
                    num_beams=self.num_beams,
                    tokens_generated=max(0, generated) if raised is None else self.steps,
                    peak_allocated_bytes=self.peak,
                    t_start=self.t_start,
                    t_end=t_end,
                    model_class=type(model).__name__,
                    params=sum(p.numel() for p in model.parameters()),
                    status="completed" if raised is None else "failed",
                )
            )
            if raised is not None:
                it.raised_in(raised)
            else:
                it.token = None
                it.enter(PROGRAM)


def _device_of(model: Any) -> Any:
    import torch

    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def _loaded(model: Any, load_s: float) -> ev.Loaded:
    from types import SimpleNamespace

    from vramtui.measure.engine.engine_run import loaded_event
    from vramtui.measure.engine.weight_split import weight_split

    split = weight_split(model)
    dtype = str(getattr(model, "dtype", "")).replace("torch.", "")
    built = SimpleNamespace(
        model=model, params=split.params, weights_bytes=split.total_bytes, split=split
    )
    return loaded_event(built, dtype, 0, load_s)
