"""What transformers' compiled decode step adds to a static-cache run on CUDA.

Pure. With `cache_implementation="static"`, generate compiles the decode step
(torch.compile, mode "reduce-overhead": CUDA graph trees). Read from torch's
memory history on an H200 (benchmarks/results/static-cache/README.md):

- When the graphs are captured, torch clears the cuBLAS workspaces: the default
  stream's workspace block is freed (its segment stays reserved in the default
  pool) and a new one is allocated in the graphs' private pool, which nothing
  outside the graphs can reuse.
- The compiled step's own buffers (one layer's K and V repeated for the query
  heads, the logits, small tensors) live in that pool too.
- On a shape's first compile inductor autotunes its Triton kernels, flushing the
  L2 cache before each timing with a buffer of the L2's size, allocated in the
  pool while the step's buffers are live: the peak allocated rises by it, and
  the pool keeps one segment of it, or two, depending on the order in which the
  kernels are tuned (both were measured). Once inductor's on-disk cache holds
  the shape, nothing is tuned and no flush buffer is allocated.

So a compiled step peaks where the eager step does (one workspace replaces the
other) plus the flush buffer on a first compile, and reserved grows by the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.predict.allocator import CachingAllocator, PoolRules

COMPILES = ("first", "cached")  # a shape's first compile, or inductor's cache holds it


@dataclass(frozen=True)
class CompiledStep:
    """The CUDA graphs' private pool and what a first compile adds."""

    pool_bytes: int  # the pool's reserved segments (a first compile: one flush segment)
    pool_bytes_max: int  # at most (a first compile: two flush segments)
    flush_bytes: int  # the autotuner's L2 flush buffer, on top of the step's peak


def compiled_step(
    rules: PoolRules, workspace: int, transient: int, flush: int, compile: str
) -> CompiledStep:
    """The pool of a compiled decode step: the cuBLAS workspace, the step's largest
    transient (taken as one layer's K and V, two equal blocks) and a small segment
    for its small tensors, replayed on the allocator's rules; then, on a first
    compile, the flush buffer's segment (twice at most)."""
    if compile not in COMPILES:
        raise ValueError(f"compile must be one of {COMPILES}, not {compile!r}")
    pool = CachingAllocator(rules)
    pool.malloc(workspace)
    if transient > rules.small_block_max:
        half = transient // 2
        blocks = [pool.malloc(half), pool.malloc(transient - half)]
        for handle in blocks:
            pool.free(handle)
    pool.malloc(rules.block_bytes)  # the step's small tensors: one small segment
    if compile == "cached":
        return CompiledStep(pool.reserved, pool.reserved, 0)
    segment = rules.segment_size(rules.block_size(flush))
    return CompiledStep(pool.reserved + segment, pool.reserved + 2 * segment, flush)
