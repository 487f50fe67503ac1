"""Constants only a GPU can tell, with the measurement that sets each one."""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.predict.allocator import MiB, PoolRules


@dataclass(frozen=True)
class Calibration:
    """Constants only a GPU can tell, calibrated on one NVIDIA H200 (143771 MiB),
    driver 580.159.04, torch 2.11.0+cu130, transformers 5.17.0, CUDA 13.0, fp16:
    benchmarks/results/calibrate/*.json (one fresh engine process per cell, OPT
    125m..6.7b, prompt 8 + 20 / 8 + 2000 new / 2000 + 1, sdpa and eager, batch 1 and 8),
    and the earlier build's grid in benchmarks/results/archive/calibration-old-build/ for the
    constants the load does not touch (context, workspaces, bookkeeping).
    benchmarks/estimator_accuracy.py compares every current cell with the estimate.

    Each field says which measurement sets it; `source` says where the whole set came from.
    """

    # NVML per-process memory minus allocator reserved, in the load phase (the context
    # and the modules torch loads at start, before any kernel ran): 610 MiB in every
    # cudnn-off cell (nvml_process_peak_by_phase["load"] - after_load.reserved).
    # docs/accuracy.md says which cells set it and which were held out.
    cuda_context_bytes: int = 610 * MiB
    # Non-allocator memory that appears at the first GEMM and kernel launches (cuBLAS
    # and cuBLASLt handles, lazily loaded kernel modules): peak NVML process - peak
    # reserved is 678 MiB in every cell with cuDNN attention off (eager and sdpa, batch
    # 1 and 8, 125m..6.7b), so 678 - 610 = 68 MiB. (sdpa cells with cuDNN attention on
    # read 686-688 MiB, 858 MiB at 8 + 2000: cuDNN's own memory, not modelled.)
    cuda_libraries_bytes: int = 68 * MiB
    # The cuBLAS workspace, allocated through the caching allocator at the first
    # matmul (so it counts in `allocated` from token 0 on, but not at load).
    # 32 MiB is torch's default on Hopper and later (H100/H200), ":4096:8" in
    # aten/src/ATen/cuda/CublasHandlePool.cpp; older GPUs default to ":4096:2:16:8"
    # (8.125 MiB); CUBLAS_WORKSPACE_CONFIG overrides both. Measured together with the
    # next term: allocated after token 0 - allocated after load - the traced tensors
    # = 33 MiB + 2,560 B in every cell (prefill_step.allocated).
    cublas_workspace_bytes: int = 32 * MiB
    # The cuBLASLt workspace (TORCH_CUBLASLT_WORKSPACE_SIZE, 1024 KiB by default), also
    # through the allocator at the first GEMM: the 1 MiB of the 33 MiB above. 1 MiB is
    # a small-pool block (<= 1 MiB), so it lives in a 2 MiB small segment.
    cublaslt_workspace_bytes: int = 1 * MiB
    # The L2 flush buffer of inductor's autotuner (torch/_inductor/runtime/benchmarking.py:
    # torch.empty(L2_cache_size // 4, dtype=int)), allocated on a shape's first compile of
    # a static cache's decode step (predict/compiled.py). The H200's L2_cache_size is
    # 62,914,560 B (torch.cuda.get_device_properties, benchmarks/results/static-cache).
    l2_flush_bytes: int = 60 * MiB
    # Small bookkeeping tensors alive during generate (one 512-byte block each): the
    # measured residual is 2,560 B after the prefill and 4,608 B from the first decode
    # step on (series[1..].allocated), in every cell; the larger is taken.
    allocated_overhead_bytes: int = 4608
    # Blocks alive before the weights are loaded. The old build (from_config under
    # torch.device) left one of 512 B; the loader the engine uses now leaves none:
    # after_load allocated and reserved equal predict/load.py's simulation to the byte
    # for all five models (benchmarks/results/calibrate/b1-short.json).
    load_overhead_bytes: int = 0
    # The caching allocator's constants (kMinBlockSize, kSmallSize, kSmallBuffer,
    # kLargeBuffer, kMinLargeAlloc, kRoundLarge in c10/cuda/CUDACachingAllocator.cpp).
    # Simulating the load with these rules (predict/load.py) reproduces after_load
    # allocated, reserved and the load step peak to the byte for all five models.
    rules: PoolRules = PoolRules()
    # Reserved beyond allocated for everything allocated after the load (workspaces,
    # the KV cache growing by torch.cat, step transients), as a fraction of it: freed
    # blocks are too small for the next, larger request, and new segments are rounded.
    # Free blocks the load leaves behind of at least large_alloc_min are reused first.
    # Used only where the cache's segments are not replayed (off CUDA, expandable
    # segments, and what a ballooning run needs once its cache is freed). Fitted on the
    # earlier build's cudnn-off cells: 0.18 (worst about 7 %).
    dynamic_slack_fraction: float = 0.18
    # What a step's transients (activations, score matrices, logits above the steady
    # figure) add to reserved, beyond the KV cache's own segments (replayed exactly,
    # both pools, by predict/kv_replay.py): their largest step's bytes times this, in
    # 2 MiB segments. Fitted on the prefill-heavy cells of the current build (2000 + 1,
    # opt-1.3b and opt-6.7b, sdpa and eager: measured 0.75-1.50 x the transient);
    # decode cells need a few MiB at most (b1-long.json, b1-short.json).
    transient_reserve_factor: float = 1.2
    # Where the cache balloons (Estimate.cache_balloons), the slack fraction does not
    # apply: once one layer's K or V tensor outgrows large_segment_bytes it gets a
    # segment of its own, rounded to 2 MiB, and the cache grows by torch.cat each step;
    # every 2 MiB of growth moves all of it to new, larger segments, and the old ones
    # stay cached (too small for any later request) until cudaMalloc fails, when the
    # allocator frees them and retries. Reserved (and NVML) then grow far past
    # allocated, up to the whole device, without running out. predict/kv_replay.py replays
    # that churn on the rules above. Measured at batch 8, 8 + 2000
    # (benchmarks/results/calibrate/b8-long.json): opt-1.3b 5.89 GB allocated,
    # 55.9 GB reserved; opt-2.7b 10.7 GB, 111.9 GB; with
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True opt-1.3b reserved 6.50 GB
    # (benchmarks/results/archive/calibration-expandable-segments-old-build/).
    source: str = (
        "calibrated: NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130, "
        "transformers 5.17.0, CUDA 13.0 (benchmarks/results/calibrate)"
    )


DEFAULT = Calibration()
