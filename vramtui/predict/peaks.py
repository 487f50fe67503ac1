"""The run's peaks from its step model: the largest step's allocated figure, the
load's, and what the caching allocator reserves for them (the KV cache's segments
replayed, predict/kv_replay.py; a compiled decode step's private pool)."""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.predict.compiled import CompiledStep
from vramtui.predict.kv_replay import KvGrowth, kv_cache_replay
from vramtui.predict.steps import StepModel


@dataclass(frozen=True)
class Peaks:
    allocated: int  # max_memory_allocated: the load's peak or the largest step's
    transient: int  # the largest step peak above that step's steady figure
    needed_reserved: int  # reserved without a ballooning cache (freed before an OOM)
    reserved: int  # what the process holds at most
    balloons: bool


def run_peaks(
    steps: StepModel, tokens: int, expandable: bool, replay_cache: bool, strided: bool = False
) -> Peaks:
    """`strided`: the cache's segments replayed in strides where its tensors have segments
    of their own (kv_replay.strided_bound)."""
    # Every term grows with the step index in decode, so the largest decode figures
    # are those of the last step; the prefill (token 0) is the other candidate.
    candidates = sorted({0, min(1, tokens - 1), tokens - 1})
    generate_peak = max(steps.step_peak(i) for i in candidates)
    # torch's max_memory_allocated covers the load too (its warm-up tensor, the size of
    # the checkpoint, is the load's peak).
    peak_allocated = max(steps.load_peak, generate_peak)
    transient = max(steps.step_peak(i) - steps.steady(i) for i in candidates)
    # Segments are never given back, so the reserved peak also covers the load's
    # (on CUDA the load's segments are already in; off CUDA reserved = allocated).
    needed = max(steps.reserved_for(generate_peak), peak_allocated)
    balloons = steps.cuda and not expandable and steps.kv_outgrows_shared_segments(tokens)
    reserved = needed
    if steps.cuda and not expandable and replay_cache:
        cal = steps.cal
        # the load's free blocks, then the cuBLAS workspaces, the prompt's cache, the
        # prefill's transient (whose freed segments the churn reuses), the cache's
        # churn, a decode step's transient
        row, layers = steps.kv_growth_shape(steps.prompt + tokens - 1)
        kv = KvGrowth(layers, row, steps.prompt, tokens)
        workspaces = (cal.cublas_workspace_bytes, cal.cublaslt_workspace_bytes)
        requests = steps.prefill_requests()  # the traced prefill, request by request
        prefill = steps.transient_blocks(
            0 if requests else steps.step_peak(0) - steps.steady(0), prefill=True
        )
        decoding = [steps.step_peak(i) - steps.steady(i) for i in candidates if i >= 1]
        decode = steps.transient_blocks(max(decoding, default=0), prefill=False)
        free, blocks = steps.load.free_large, (prefill.replayed, decode.replayed)
        found = kv_cache_replay(
            cal.rules, free, workspaces, kv, *blocks, strided=strided, requests=requests
        )
        beside = max(prefill.beside, decode.beside)
        reserved = max(steps.load.reserved + found.grown + beside, peak_allocated)
        # Where memory runs out the allocator gives back the cached segments no block
        # uses and tries again (predict/allocator.py): the run needs those in use at once.
        needed = max(steps.load.reserved + found.needed + beside, peak_allocated)
    return Peaks(peak_allocated, transient, needed, reserved, balloons)


def compiled_peaks(steps: StepModel, peaks: Peaks, step: CompiledStep) -> Peaks:
    """The peaks with a compiled decode step: its flush buffer (a first compile) on
    top of the first decode step's peak, its private pool beside the reserved."""
    flushed = steps.step_peak(1) + step.flush_bytes
    return Peaks(
        allocated=max(peaks.allocated, flushed),
        transient=max(peaks.transient, flushed - steps.steady(1)),
        needed_reserved=peaks.needed_reserved + step.pool_bytes_max,
        reserved=peaks.reserved + step.pool_bytes,
        balloons=False,
    )
