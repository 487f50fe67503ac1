"""A training step's memory: the traced events replayed on the allocator model.

Pure Python. The weights are allocated first (QLoRA's 4-bit layers as the packed
weight and its quantization state), then the two traced steps event by event on
predict/allocator.py's caching allocator, so peak allocated, the segments reserved
and the phase each peak falls in come out together. An optimizer the tracer cannot
run (bitsandbytes' 8-bit AdamW, Adafactor) has its states allocated in step 1's
optimizer phase (optimizer_states.py) and its step's transient in every one. On CUDA
the first matmul of the forward and of backward (autograd's own thread, its own
cuBLAS handle) each allocate a cuBLAS workspace. Step 2 is the steady state: the
optimizer's states exist from step 1 on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from vramtui.errors import UsageError
from vramtui.predict.allocator import CachingAllocator, Handle
from vramtui.predict.calibration import DEFAULT, Calibration
from vramtui.predict.quant_storage import stored
from vramtui.predict.training.config_steps import config_train_trace
from vramtui.predict.training.optimizer_states import (
    OptimizerStates,
    Param,
    optimizer_states,
    step_transient,
)
from vramtui.predict.training.trace import (
    TrainShape,
    TrainTrace,
    cached_train_trace,
    train_trace,
)
from vramtui.runspec import ResolvedRun
from vramtui.runspec.train_spec import TrainSpec


def nf4_state(numel: int) -> tuple[int, ...]:
    """The quantization state bitsandbytes keeps beside a packed nf4 weight with double
    quantization: the uint8 absmax per 64 weights, the 16-entry nf4 code, the offset,
    the float32 absmax per 256 of those and the 256-entry code of the nested absmax
    (the storage rule of --quant nf4 with --double-quant)."""
    return stored("nf4", 1, numel, 0, double_quant=True).state


def weight_tensors(param: Param) -> tuple[int, ...]:
    if param.four_bit:  # the parameter is the packed weight: (n + 1) // 2 uint8
        rows_cols = param.numel * 2
        return (param.nbytes, *nf4_state(rows_cols))
    return (param.nbytes,)


@dataclass(frozen=True)
class TrainingEstimate:
    """Predicted memory of a training run's steady state (step 2 on), by term."""

    method: str
    optim: str
    batch: int
    seq: int
    dtype: str
    grad_checkpointing: bool
    grad_accum: int
    backend: str
    weights_bytes: int  # every weight (and 4-bit quantization state), frozen or not
    frozen_weights_bytes: int  # and the buffers (rotary frequencies, ...)
    trainable_weights_bytes: int
    gradients_bytes: int  # one gradient per trainable parameter, in its dtype
    optimizer_states_bytes: int  # in torch's allocator
    paged_states_bytes: int  # unified memory (paged optimizers): NVML only, while resident
    activations_bytes: int  # alive at the forward's end (saved for backward, the loss)
    peak_allocated_bytes: int  # torch.cuda.max_memory_allocated()
    peak_reserved_bytes: int
    # the most bytes of segments in use (holding a block) at once: what the allocator
    # needs where it gives its cached segments back rather than run out (allocator.py)
    needed_reserved_bytes: int
    slack_bytes: int  # reserved - allocated at the peak
    context_bytes: int  # CUDA context and libraries
    peak_total_bytes: int  # the process's device memory (NVML) at the peak
    peak_step: int
    peak_phase: str  # forward | backward | optimizer | zero_grad
    phase_peaks: dict[str, int] = field(default_factory=dict)  # steady step, each phase
    basis: str = "traced"  # traced | approximate (config_steps.py: the config's numbers)

    def to_dict(self) -> dict[str, object]:
        return {"workload": self.method, **asdict(self)}


class _Replay:
    """The allocator, the live handles and the peak of each (step, phase)."""

    def __init__(self, cal: Calibration, cuda: bool) -> None:
        self.alloc = CachingAllocator(cal.rules)
        self.cuda = cuda
        self.handles: list[Handle] = []
        self.where = (0, "load")
        self.peaks: dict[tuple[int, str], int] = {}

    @property
    def allocated(self) -> int:
        return self.alloc.allocated

    def malloc(self, nbytes: int) -> Handle:
        handle = self.alloc.malloc(nbytes) if self.cuda else self._cpu(nbytes)
        if self.allocated > self.peaks.get(self.where, -1):
            self.peaks[self.where] = self.allocated
        return handle

    def _cpu(self, nbytes: int) -> Handle:
        """Off CUDA nothing is rounded or cached: a block per request, freed for good."""
        self.alloc.allocated += nbytes
        self.alloc.reserved = max(self.alloc.reserved, self.alloc.allocated)
        self.alloc.peak_allocated = max(self.alloc.peak_allocated, self.alloc.allocated)
        return (-1, nbytes)

    def free(self, handle: Handle) -> None:
        if handle[0] == -1:
            self.alloc.allocated -= handle[1]
        else:
            self.alloc.free(handle)

    def events(self, values: tuple[int, ...]) -> None:
        """The events in the current phase: `malloc` and `free`, inline on CUDA (the hot
        path: a step of a large model is tens of thousands of events)."""
        if not self.cuda:
            for value in values:
                if value > 0:
                    self.handles.append(self.malloc(value))
                else:
                    self.free(self.handles[-value - 1])
            return
        alloc, handles = self.alloc, self.handles
        top = self.peaks.get(self.where, -1)
        for value in values:
            if value > 0:
                handles.append(alloc.malloc(value))
                if alloc.allocated > top:
                    top = alloc.allocated
            else:
                alloc.free(handles[-value - 1])
        if top >= 0:
            self.peaks[self.where] = top


def _replay(
    trace: TrainTrace, shape: TrainShape, states: OptimizerStates, cal: Calibration
) -> tuple[_Replay, dict[tuple[int, str], int]]:
    """Replays the load and both steps; returns the replay and the allocated bytes as
    each phase began."""
    run = _Replay(cal, shape.backend == "cuda")
    for param in trace.params:
        for size in weight_tensors(param):
            run.malloc(size)
    for size in trace.buffers:
        run.malloc(size)
    starts: dict[tuple[int, str], int] = {}
    transient = step_transient(shape.optim, list(trace.params))
    workspace = cal.cublas_workspace_bytes + cal.cublaslt_workspace_bytes
    marks = sorted(trace.marks, key=lambda m: m.event)
    ends = [m.event for m in marks[1:]] + [len(trace.events)]
    for mark, end in zip(marks, ends, strict=True):
        run.where = (mark.step, mark.phase)
        starts.setdefault(run.where, run.allocated)
        if run.cuda and mark.step == 1 and mark.phase in ("forward", "backward"):
            if (1, mark.phase) not in run.peaks:
                run.malloc(workspace)
        if mark.phase == "optimizer" and not trace.optimizer_traced:
            if mark.step == 1:
                for size in states.tensors:
                    run.malloc(size)
            if transient:
                run.free(run.malloc(transient))
        run.events(trace.events[mark.event : end])
    return run, starts


def estimate_training(
    trace: TrainTrace, shape: TrainShape, calibration: Calibration = DEFAULT
) -> TrainingEstimate:
    """The training estimate of `trace` (two steps of `shape`'s recipe)."""
    params = list(trace.params)
    states = optimizer_states(shape.optim, params)
    run, starts = _replay(trace, shape, states, calibration)
    steady = {phase: peak for (step, phase), peak in run.peaks.items() if step == 2}
    peak = max(run.peaks.values())
    step, phase = max(run.peaks, key=lambda where: (run.peaks[where], where[0]))
    reserved = run.alloc.reserved
    cuda = shape.backend == "cuda"
    needed = max(run.alloc.peak_in_use, peak) if cuda else reserved
    context = calibration.cuda_context_bytes + calibration.cuda_libraries_bytes if cuda else 0
    trained = sum(p.nbytes for p in params if p.trainable)
    weights = sum(sum(weight_tensors(p)) for p in params) + sum(trace.buffers)
    return TrainingEstimate(
        method=shape.method,
        optim=shape.optim,
        batch=shape.batch,
        seq=shape.seq,
        dtype=shape.dtype,
        grad_checkpointing=shape.grad_checkpointing,
        grad_accum=shape.grad_accum,
        backend=shape.backend,
        weights_bytes=weights,
        frozen_weights_bytes=weights - trained,
        trainable_weights_bytes=trained,
        gradients_bytes=trained,
        optimizer_states_bytes=states.device_bytes,
        paged_states_bytes=states.paged_bytes,
        activations_bytes=starts.get((2, "backward"), 0) - starts.get((2, "forward"), 0),
        peak_allocated_bytes=peak,
        peak_reserved_bytes=reserved,
        needed_reserved_bytes=needed,
        slack_bytes=max(0, reserved - peak),
        context_bytes=context,
        peak_total_bytes=reserved + context + (states.paged_bytes if cuda else 0),
        peak_step=step,
        peak_phase=phase,
        phase_peaks=steady,
    )


def estimate_train_run(
    resolved: ResolvedRun, spec: TrainSpec, approximate: bool = False
) -> TrainingEstimate:
    """The training estimate of a resolved run of `spec` (what `vramtui train` draws
    beside its measurement, and `estimate --workload` prints). With `approximate`, a
    shape with no trace cached is estimated from the config's numbers (basis
    "approximate", config_steps.py) where its family is written there, not traced.
    Raises TraceError (a UsageError) where the model's code cannot run on meta,
    UsageError where its config is not known before the engine fetches it."""
    if resolved.config is None:
        raise UsageError(
            f"cannot estimate {resolved.spec.path}: {resolved.model_note}; pass its config.json",
            field="path",
        )
    shape = TrainShape.of(spec, resolved.backend)
    config = dict(resolved.config)
    if approximate and cached_train_trace(spec.base.model, config, shape) is None:
        written = config_train_trace(config, shape)
        if written is not None:
            return replace(estimate_training(written, shape), basis="approximate")
    return estimate_training(train_trace(spec.base.model, config, shape), shape)
