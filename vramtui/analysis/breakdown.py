"""Where a run's bytes went, as measured, and how that compares with the estimate.

Pure: reads a snapshot of a `vramtui.measure.session.Session`. The components stack, at one step,
from the bottom up:

    weights          the engine's count of the model's own tensors (each storage once)
    KV cache         the engine's count of the cache tensors at that step
    other allocated  allocated - weights - KV (cuBLAS workspace, logits, ids, and
                     the allocator's rounding of every tensor to 512 B blocks)
    transient        that step's peak - allocated after it
    slack            reserved - that step's peak (cached by the allocator, unused
                     even at the step's peak; reserved never shrinks, so the end
                     of the step's figure is the one at its peak)
    context & other  NVML process - reserved (CUDA context, libraries)

so that they sum to the NVML per-process figure where there is one. Quantized weights
split, bottom up, into the modules kept in full precision (embeddings, lm_head, norms),
the packed quantized weights, and their quantization state (absmax, scales, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.session import SessionView, step_phase
from vramtui.predict.calibration import DEFAULT, Calibration
from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Estimate, estimate, trace_for
from vramtui.runspec import RunSpec, expandable_segments, resolve_dtype
from vramtui.runspec.resolve import read_model

AT = ("latest", "peak")
LABELS = {
    "weights_bytes": "weights",
    "kv_cache_bytes": "KV cache",
    "other_allocated_bytes": "other allocated",
    "transient_bytes": "transient",
    "slack_bytes": "allocator slack",
    "context_bytes": "context & other",
}
# The weights of a quantized model, as stored (events.WeightSplit), bottom up
WEIGHT_PARTS = {
    "full_bytes": "weights full",
    "packed_bytes": "weights packed",
    "state_bytes": "quant state",
}


@dataclass(frozen=True)
class Breakdown:
    at: str  # latest | peak
    token: int | None  # the step it describes (None: the load sample)
    phase: str
    weights_bytes: int
    kv_cache_bytes: int
    other_allocated_bytes: int | None
    transient_bytes: int | None
    slack_bytes: int | None  # None without an allocator (CPU)
    context_bytes: int | None  # None without NVML
    total_bytes: int  # the sum of the components present
    total_source: str  # what the total stands for: NVML process | allocator reserved | ...
    weights_split: ev.WeightSplit | None = None  # quantized weights, as stored

    def components(self, split_weights: bool = False) -> list[tuple[str, int | None]]:
        """(label, bytes) from the bottom of the stack up; `split_weights`: quantized
        weights as their parts (WEIGHT_PARTS), which sum to the weights."""
        rows = [(label, getattr(self, name)) for name, label in LABELS.items()]
        if split_weights and self.weights_split is not None:
            split = self.weights_split
            rows[0:1] = [(label, getattr(split, name)) for name, label in WEIGHT_PARTS.items()]
        return rows


def _is_allocator(session: SessionView) -> bool:
    """Whether the engine's figures are an allocator's (CUDA, MPS) rather than RSS."""
    hello = session.hello
    return hello is None or hello.backend != "cpu"


def measured_weights(session: SessionView) -> int | None:
    """The weights as themselves: the bytes of every parameter and buffer the engine
    loaded, counted from the tensors (not allocated-after-load, which also holds the
    allocator's block rounding). A placed model: those on the run's own device."""
    if session.placed is not None and session.hello is not None:
        here = [d for d in session.placed.devices if d.get("device") == session.hello.device]
        return int(here[0]["weights_bytes"]) if here else 0
    return session.loaded.weights_bytes if session.loaded else None


def quantized_split(session: SessionView) -> ev.WeightSplit | None:
    """The split of a quantized model's weights (on one device), if it has one."""
    split = session.loaded.split if session.loaded else None
    if split is None or not split.quantized_params or session.placed is not None:
        return None
    return split


def _pick(session: SessionView, at: str) -> ev.Sample | None:
    tokens = list(session.token_samples)
    if not tokens:
        loads = [s for s in session.samples if s.phase == "load"]
        return loads[-1] if loads else None
    if at == "latest":
        return tokens[-1]
    key = "step_peak" if any(s.step_peak is not None for s in tokens) else "allocated"
    best = None
    for s in tokens:
        value = getattr(s, key)
        if value is not None and (best is None or value > getattr(best, key)):
            best = s
    return best


def _nonneg(value: int | None) -> int | None:
    return None if value is None else max(0, value)


def _nvml_at(session: SessionView, sample: ev.Sample, at: str) -> int | None:
    if sample.token is not None:
        for token, value in session.token_series("nvml_process"):
            if token == sample.token:
                return value
    return session.latest("nvml_process") if at == "latest" else None


def measured_breakdown(session: SessionView, at: str = "latest") -> Breakdown | None:
    """The measured breakdown at the latest step, or at the step with the highest peak.

    None until the session holds a sample and the weights are known.
    """
    if at not in AT:
        raise ValueError(f"at must be one of {AT}, not {at!r}")
    sample = _pick(session, at)
    weights = measured_weights(session)
    if sample is None or weights is None:
        return None
    kv = sample.kv_bytes or 0
    allocated = sample.allocated
    peak = sample.step_peak if sample.step_peak is not None else allocated
    other = transient = slack = context = None
    if allocated is not None:
        other = _nonneg(allocated - weights - kv)
        transient = _nonneg(peak - allocated) if peak is not None else None
    if sample.reserved is not None and peak is not None:
        slack = _nonneg(sample.reserved - peak)
    nvml = _nvml_at(session, sample, at)
    if nvml is not None and sample.reserved is not None:
        context = _nonneg(nvml - sample.reserved)
    parts = [weights, kv, other, transient, slack, context]
    total = sum(p for p in parts if p is not None)
    if context is not None:
        source = "NVML process"
    elif slack is not None:
        source = "allocator reserved"
    elif _is_allocator(session):
        source = "allocator peak"
    else:
        source = "process RSS peak"
    return Breakdown(
        at=at,
        token=sample.token,
        phase=step_phase(sample),
        weights_bytes=weights,
        kv_cache_bytes=kv,
        other_allocated_bytes=other,
        transient_bytes=transient,
        slack_bytes=slack,
        context_bytes=context,
        total_bytes=total,
        total_source=source,
        weights_split=quantized_split(session),
    )


@dataclass(frozen=True)
class ComparisonRow:
    component: str
    predicted: int | None
    measured: int | None
    error_percent: float | None  # (predicted - measured) / measured x 100


def _row(component: str, predicted: int | None, measured: int | None) -> ComparisonRow:
    error = None
    if predicted is not None and measured:
        error = round((predicted - measured) / measured * 100, 2)
    return ComparisonRow(component, predicted, measured, error)


def _peak(session: SessionView, name: str) -> int | None:
    peak = session.peaks.get(name)
    return peak.value if peak else None


def _capped(pred: Estimate, device_total: int | None) -> tuple[int, int]:
    """Predicted peak reserved and total. A ballooning cache's segments grow until the
    device is full (the allocator frees them and retries before an out-of-memory): as
    the estimate says, at most what the device holds."""
    reserved, total = pred.peak_reserved_bytes, pred.peak_total_bytes
    if pred.cache_balloons and device_total:
        total = min(total, device_total)
        reserved = min(reserved, total - pred.context_bytes)
    return reserved, total


def _nvml_peak_sampled(session: SessionView) -> int | None:
    """The NVML process peak. A failed run's last step (an out-of-memory) was seen by NVML
    but never sampled by the allocator: up to its last sample, to compare like moments."""
    if session.failure is None or not session.token_samples:
        return _peak(session, "nvml_process")
    last = session.token_samples[-1].t
    seen = [n.process_bytes for n in session.nvml if n.t <= last and n.process_bytes]
    return max(seen, default=None)


def compare(est: Estimate, session: SessionView) -> list[ComparisonRow]:
    """Predicted against measured, component by component, for the summary table.

    A run that stopped early is compared with the estimate of the tokens it made.
    """
    samples = list(session.token_samples)
    made = max((s.token for s in samples if s.token is not None), default=-1) + 1
    done = min(made, est.tokens)
    pred = est.for_tokens(done) if 0 < done < est.tokens else est
    kv = next((s.kv_bytes for s in reversed(samples) if s.kv_bytes is not None), None)
    transients = [
        s.step_peak - s.allocated
        for s in samples
        if s.step_peak is not None and s.allocated is not None
    ]
    peak_alloc = _peak(session, "step_peak") or _peak(session, "allocated")
    peak_reserved = _peak(session, "reserved")
    peak_nvml = _nvml_peak_sampled(session)
    if session.failure is not None and not samples:  # ended before its first token:
        peak_alloc = peak_reserved = peak_nvml = None  # its peaks are the load's alone
    slack = peak_reserved - peak_alloc if peak_reserved is not None and peak_alloc else None
    context = peak_nvml - peak_reserved if peak_nvml is not None and peak_reserved else None
    allocator = _is_allocator(session)
    pred_reserved, pred_total = _capped(pred, session.device_total())
    pred_slack = pred.slack_bytes - (pred.peak_reserved_bytes - pred_reserved)
    rows = [
        _row("weights", pred.weights_bytes, measured_weights(session)),
        _row("KV cache (end)", pred.kv_cache_bytes if samples else None, kv),
        _row(
            "transient (largest)",
            pred.transient_bytes,
            max(transients) if allocator and transients else None,
        ),
        _row("allocator slack", pred_slack, slack),
        _row("context & other", pred.context_bytes, context),
        _row("peak allocated", pred.peak_allocated_bytes, peak_alloc if allocator else None),
        _row("peak reserved", pred_reserved, peak_reserved),
        _row("peak total (NVML)", pred_total, peak_nvml),
    ]
    if not allocator:  # the CPU's figure is the process's RSS: the tensors and Python itself
        rows.append(_row("peak RSS", pred.peak_allocated_bytes + cpu_process().bytes, peak_alloc))
    return rows


def estimate_for_session(
    view: SessionView, calibration: Calibration = DEFAULT, only_cached: bool = True
) -> Estimate | None:
    """The estimate of the run a session records, where the model can be estimated.

    A model other than OPT is estimated from a trace of its code (predict/tracing):
    with `only_cached` (the default: screens must not wait) only if that trace was
    made before, as the start screen's prediction of the same run does. None for a
    model placed across devices.
    """
    if not isinstance(view.spec, RunSpec) or view.spec.device_map:
        return None  # one device's estimate is not a placed run's (see predict/placed.py)
    return run_estimate(view, calibration, only_cached)


def compiled_as(view: SessionView) -> str:
    """How the run's compiled step was compiled (predict/compiled.py): "cached" where
    the engine found every graph in inductor's cache, else "first"."""
    done = view.done
    return "cached" if done is not None and done.compiled == "cached" else "first"


def run_estimate(
    view: SessionView, calibration: Calibration = DEFAULT, only_cached: bool = True
) -> Estimate | None:
    """The estimate of a session's run as if on one device (a placed run's is split by
    device from it: report/placed_compare.py)."""
    if not isinstance(view.spec, RunSpec):
        return None  # a profiled program's model is its own
    try:
        spec, info, _, config = read_model(view.spec)
    except (UsageError, TypeError, KeyError):
        return None
    backend = view.backend or "cuda"
    loaded = view.loaded
    prompt = loaded.prompt_tokens if loaded else spec.prompt_tokens
    dtype = loaded.dtype if loaded else resolve_dtype(spec.dtype, backend)
    try:
        model = info or trace_for(
            spec, config, prompt=prompt, dtype=dtype, backend=backend, only_cached=only_cached
        )
        if model is None:
            return None
        return estimate(
            model,
            prompt_tokens=prompt,
            tokens=spec.tokens,
            batch=spec.batch,
            dtype=dtype,
            attn=spec.attn,
            backend=backend,
            calibration=calibration,
            expandable_segments=expandable_segments(view.environment.cuda_alloc_conf),
            cache=spec.cache,
            compile=compiled_as(view),
        )
    except UsageError:
        return None
