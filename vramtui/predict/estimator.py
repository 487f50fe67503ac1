"""Predict the memory of one generation run, term by term, before running it.

Pure Python (no torch). `estimate()` reads a `ModelInfo` and the run's shape;
the step model (predict/steps.py) says what each generation step allocates,
the load model (predict/load.py) what building the model leaves in the caching
allocator, the KV replay (predict/kv_replay.py) where the allocator's cache
balloons, and `Calibration` holds what only a GPU can tell (the CUDA context,
cuBLAS workspaces, fragmentation), each constant with the measurement that set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from vramtui.errors import UsageError
from vramtui.predict.calibration import DEFAULT, Calibration
from vramtui.predict.compiled import compiled_step
from vramtui.predict.peaks import compiled_peaks, run_peaks
from vramtui.predict.run_shape import (
    Architecture,
    check_args,
    held_positions,
    kv_bytes,
    quantized_kv_bytes,
    sample_tokens,
    step_model,
)
from vramtui.predict.steps import StepModel
from vramtui.predict.tracing.traces import Trace, trace_model
from vramtui.runspec import ResolvedRun, RunSpec
from vramtui.runspec.sources import max_positions


@dataclass(frozen=True)
class Estimate:
    """Predicted memory of one run. Byte figures are those torch and NVML report."""

    weights_bytes: int  # params x bytes per element (exact)
    kv_cache_bytes: int  # at the end of the run: 2 x layers x hidden x positions held x batch x e
    transient_bytes: int  # largest step peak above that step's steady allocated
    slack_bytes: int  # allocator reserved - allocated, at the peak
    context_bytes: int  # CUDA context and other non-allocator memory of the process
    peak_allocated_bytes: int  # torch.cuda.max_memory_allocated()
    peak_reserved_bytes: int
    peak_total_bytes: int  # NVML per-process memory at the peak
    prompt_tokens: int
    tokens: int
    batch: int
    dtype: str
    attn: str
    backend: str = "cuda"
    load_peak_bytes: int = 0  # allocated peak while building the model (untied lm_head)
    # What must fit the device for the run to complete: peak total without the cached
    # segments a ballooning cache leaves (the allocator frees them before an OOM).
    required_bytes: int = 0
    cache_balloons: bool = False  # reserved grows far past allocated (see Calibration)
    expandable_segments: bool = False  # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
    cache: str = "dynamic"  # dynamic | static (offloaded is not modelled)
    # A static cache on CUDA: transformers compiles the decode step (predict/compiled.py).
    compile: str | None = None  # first | cached (inductor's cache holds the shape) | None
    graph_pool_bytes: int = 0  # reserved by the CUDA graphs' private pool
    first_compile_bytes: int = 0  # the autotuner's L2 flush buffer (a first compile)
    # --quant: the weights as the quantizer stores them (predict/quant_storage.py)
    quant: str = "none"
    double_quant: bool = False
    weights_packed_bytes: int = 0  # the converted weights' packed data
    weights_state_bytes: int = 0  # their absmax / scales / zero points / codes
    weights_full_bytes: int = 0  # what stays in the model's dtype (embeddings, lm_head, ...)
    cache_bits: int = 0  # --cache quantized: nbits of the QuantizedCache; 0 otherwise
    model: Architecture = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    calibration: Calibration = field(default=DEFAULT, repr=False, compare=False)

    @cached_property
    def _steps(self) -> StepModel:
        return step_model(
            self.model,
            self.prompt_tokens,
            self.batch,
            self.dtype,
            self.attn,
            self.backend,
            self.calibration,
            self.cache,
            self.tokens,
            self.quant,
            self.double_quant,
            self.cache_bits,
        )

    def _check(self, token: int) -> None:
        if not 0 <= token < self.tokens:
            raise ValueError(f"token {token} is outside 0..{self.tokens - 1}")

    def kv_at(self, token: int) -> int:
        """KV cache bytes after step `token` (prompt + token positions)."""
        self._check(token)
        held = held_positions(self.prompt_tokens, self.tokens, token, self.cache)
        if self.cache_bits:
            return quantized_kv_bytes(self.model, self.dtype, self.batch, self.prompt_tokens,
                                      held, self.cache_bits)  # fmt: skip
        return kv_bytes(self.model, self.dtype, self.batch, held)

    def allocated_at(self, token: int) -> int:
        """Predicted allocated bytes after step `token` (when the engine samples it)."""
        self._check(token)
        return self._steps.steady(token)

    def step_peak_at(self, token: int) -> int:
        """Predicted peak allocated bytes during step `token`."""
        self._check(token)
        return self._steps.step_peak(token)

    def curve(self, points: int = 200) -> list[tuple[int, int]]:
        """(token, predicted step peak), at most `points` tokens, first and last included."""
        return [(t, self.step_peak_at(t)) for t in sample_tokens(self.tokens, points)]

    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `estimate` that describe this run, but its length."""
        return dict(
            prompt_tokens=self.prompt_tokens,
            batch=self.batch,
            dtype=self.dtype,
            attn=self.attn,
            backend=self.backend,
            calibration=self.calibration,
            expandable_segments=self.expandable_segments,
            cache=self.cache,
            compile=self.compile or "first",
            quant=self.quant,
            double_quant=self.double_quant,
            cache_bits=self.cache_bits or 4,
        )

    def kv_layer_tensor_bytes(self, token: int) -> int:
        """One layer's K (or V) tensor after step `token`: B x positions x hidden x e."""
        return (self.prompt_tokens + token) * self._steps.kv_row

    def for_tokens(self, tokens: int) -> Estimate:
        """The same run stopped after `tokens` new tokens (e.g. to compare a failed run)."""
        return self.varied(tokens=tokens)

    def varied(self, **changes: Any) -> Estimate:
        """The same run with some of `estimate`'s keywords changed (tokens, compile, ...)."""
        return estimate(self.model, **{"tokens": self.tokens, **self.run_kwargs(), **changes})

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("model", "calibration")}
        data["model"] = self.model.name if self.model else None
        data["params"] = self.model.params if self.model else None
        data["calibration"] = self.calibration.source
        data["weights_bytes_per_param"] = self.weights_bytes_per_param
        return data

    @property
    def weights_bytes_per_param(self) -> float:
        """The weights' bytes (quantization state and full-precision modules included)
        per parameter of the unquantized model."""
        params = self.model.params if self.model else 0
        return self.weights_bytes / params if params else 0.0


def estimate(
    model: Architecture,
    *,
    prompt_tokens: int = 8,
    tokens: int = 200,
    batch: int = 1,
    dtype: str = "float16",
    attn: str = "sdpa",
    backend: str = "cuda",
    calibration: Calibration = DEFAULT,
    expandable_segments: bool = False,
    replay_cache: bool = True,
    strided_replay: bool = False,
    cache: str = "dynamic",
    compile: str = "first",
    quant: str = "none",
    double_quant: bool = False,
    cache_bits: int = 4,
) -> Estimate:
    """Predict one run of `tokens` new tokens after a `prompt_tokens` prompt.

    backend "cuda" models torch's caching allocator and the CUDA context; "cpu"
    (and "mps", whose driver is not modelled) has no context term and reserves
    exactly what it allocates, and predicts tensor bytes, not the process RSS
    the engine reports there. `expandable_segments`: the allocator runs with
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (no ballooning cache).
    `replay_cache=False` skips replaying the cache's segments (kv_replay.py): peak
    reserved is then the fragmentation model's (Calibration.dynamic_slack_fraction);
    `strided_replay=True` replays them in strides once the cache's tensors have segments
    of their own, within kv_replay.strided_bound of the exact replay.
    `quant`: a --quant method (weights as its quantizer stores them, its load and
    dequantization transients, predict/quantized.py); `cache="quantized"`: transformers'
    QuantizedCache with `cache_bits` bits (predict/quant_kv.py). Neither needs the
    quantization libraries: the rules are arithmetic.
    """
    check_args(model, prompt_tokens, tokens, batch, dtype, attn, backend)
    if cache not in ("dynamic", "static", "quantized"):
        raise UsageError(
            f"the estimator does not model the {cache} cache yet (`vramtui run` measures it)",
            field="cache",
        )
    bits = cache_bits if cache == "quantized" else 0
    steps = step_model(
        model, prompt_tokens, batch, dtype, attn, backend, calibration, cache, tokens,
        quant, double_quant, bits,
    )  # fmt: skip
    # a static cache never grows: no churn to replay, nothing to balloon (the quantized
    # cache's churn is not replayed either)
    dynamic = cache == "dynamic"
    expandable = expandable_segments or not dynamic
    peaks = run_peaks(steps, tokens, expandable, replay_cache and dynamic, strided_replay)
    step = None
    if cache == "static" and steps.cuda and tokens >= 2:  # only decode steps are compiled
        cal = calibration
        transient = steps.forward(1, prompt_tokens + tokens)
        step = compiled_step(
            cal.rules, cal.cublas_workspace_bytes, transient, cal.l2_flush_bytes, compile
        )
        peaks = compiled_peaks(steps, peaks, step)
    context = calibration.cuda_context_bytes + calibration.cuda_libraries_bytes
    context = context if steps.cuda else 0  # no CUDA context off CUDA
    held = held_positions(prompt_tokens, tokens, tokens - 1, cache)
    kv_final = (
        quantized_kv_bytes(model, dtype, batch, prompt_tokens, held, bits)
        if bits
        else kv_bytes(model, dtype, batch, held)
    )
    split = steps.quant.weights if steps.quant is not None else None
    return Estimate(
        weights_bytes=steps.tensor_bytes(),
        quant=quant,
        double_quant=double_quant and split is not None,
        weights_packed_bytes=split.packed_bytes if split else 0,
        weights_state_bytes=split.state_bytes if split else 0,
        # kept in the model's dtype: unconverted tensors and buffers a checkpoint lacks
        weights_full_bytes=steps.tensor_bytes() - (split.packed_bytes + split.state_bytes)
        if split
        else steps.tensor_bytes(),
        cache_bits=bits,
        kv_cache_bytes=kv_final,
        transient_bytes=peaks.transient,
        slack_bytes=max(0, peaks.reserved - peaks.allocated),
        context_bytes=context,
        peak_allocated_bytes=peaks.allocated,
        peak_reserved_bytes=peaks.reserved,
        peak_total_bytes=peaks.reserved + context,
        load_peak_bytes=steps.load_peak,
        required_bytes=peaks.needed_reserved + context,
        cache_balloons=peaks.balloons,
        expandable_segments=expandable_segments,
        cache=cache,
        compile=compile if step else None,
        graph_pool_bytes=step.pool_bytes if step else 0,
        first_compile_bytes=step.flush_bytes if step else 0,
        prompt_tokens=prompt_tokens,
        tokens=tokens,
        batch=batch,
        dtype=dtype,
        attn=attn,
        backend=backend,
        model=model,
        calibration=calibration,
    )


def trace_for(
    spec: RunSpec,
    config: Mapping[str, Any] | None,
    *,
    prompt: int,
    dtype: str,
    backend: str,
    only_cached: bool = False,
) -> Trace | None:
    """The trace of a config for `spec`'s batch and attention, at the prompt, dtype and
    backend the run has (None: no config, or `only_cached` and not traced yet)."""
    if config is None:
        return None
    return trace_model(
        spec.model, dict(config), max_positions(dict(config)) or 2048, prompt=prompt,
        batch=spec.batch, dtype=dtype, attn=spec.attn, backend=backend, only_cached=only_cached,
    )  # fmt: skip


def architecture_of(run: ResolvedRun, only_cached: bool = False) -> Architecture | None:
    """What the estimator reads the run's model from: the OPT record, or a trace of the
    config (None: the config is not known before the engine fetches it, or
    `only_cached` and it was not traced yet). Raises TraceError (a UsageError) when
    the model's code cannot be traced."""
    if run.model is not None:
        return run.model
    spec = run.spec
    return trace_for(
        spec, run.config, prompt=spec.prompt_tokens, dtype=run.dtype, backend=run.backend,
        only_cached=only_cached,
    )  # fmt: skip


def estimate_run(run: ResolvedRun, only_cached: bool = False, **options: Any) -> Estimate | None:
    """The estimate of a resolved run; None where its model is not known yet (see
    `architecture_of`)."""
    model = architecture_of(run, only_cached)
    if model is None:
        return None
    spec = run.spec
    return estimate(
        model,
        prompt_tokens=spec.prompt_tokens,
        tokens=spec.tokens,
        batch=spec.batch,
        dtype=run.dtype,
        attn=spec.attn,
        backend=run.backend,
        expandable_segments=run.expandable_segments,
        cache=spec.cache,
        quant=spec.quant,
        double_quant=spec.double_quant,
        cache_bits=spec.cache_bits,
        **options,
    )
