"""Predict the memory of one generation run, term by term, before running it.

Pure Python (no torch): it reads a `ModelInfo` and the run's shape and models
what the engine (vramtui.engine.child) does with transformers' `generate`:
greedy, exactly N new tokens, a `DynamicCache` that grows by `torch.cat`, and
a sample taken right after the forward that produced each token (token 0's
step is the prefill forward over the whole prompt).

Every tensor alive at each moment of a step was traced with the CPU
allocator (torch profiler, `profile_memory=True`, transformers 5.24, OPT):
the model below reproduces those traces to within a few kilobytes on the
CPU. The load (the weights, and the lm_head transformers builds before
`tie_weights` frees it) is simulated block by block on a model of the CUDA
caching allocator, which reproduces the H200's figures after load to the byte.
What only a GPU can tell (CUDA context, cuBLAS workspaces, what the caching
allocator reserves beyond what is allocated during generation) lives in
`Calibration`, whose defaults say which measurement sets each number.

Names used below, for one step with `q` new positions (the prompt for the
prefill, 1 for a decode step) and `n` positions in the cache after it:
    B batch, h hidden, H heads, f ffn, V vocab, e bytes per element,
    X = B*q*h*e (one hidden-state activation), F = B*q*f*e (one MLP
    intermediate), L = B*V*4 (one float32 row of logits per sequence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from vramtui.catalogue import DTYPE_BYTES, OPT_POSITION_OFFSET, ModelInfo
from vramtui.errors import UsageError
from vramtui.kv_segments import PoolRules, kv_cache_reserve

MiB = 1024**2
BACKENDS = ("cuda", "mps", "cpu")
ATTN = ("sdpa", "eager")
INT64 = 8  # input ids and attention masks are int64
FLOAT32 = 4  # generate converts the last position's logits to float32


@dataclass(frozen=True)
class Calibration:
    """Constants only a GPU can tell, calibrated on one NVIDIA H200 (143771 MiB),
    driver 580.159.04, torch 2.11.0+cu130, transformers 5.17.0, CUDA 13.0, fp16:
    benchmarks/results/calibration/*.json (one fresh engine process per cell, OPT
    125m..6.7b, prompt 8 + 20 / 8 + 2000 new / 2000 + 1, sdpa and eager, batch 1 and 8).
    benchmarks/estimator_accuracy.py compares every cell with the estimate.

    Each field says which measurement sets it; `source` says where the whole set came from.
    """

    # NVML per-process memory minus allocator reserved, in the load phase (the context
    # and the modules torch loads at start, before any kernel ran): 610 MiB in every
    # cudnn-off cell (nvml_process_peak_by_phase["load"] - after_load.reserved).
    # DESIGN.md's 642 MB after torch.zeros(1) (less its 2 MiB segment) agrees.
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
    # Small bookkeeping tensors alive during generate (one 512-byte block each): the
    # measured residual is 2,560 B after the prefill and 4,608 B from the first decode
    # step on (series[1..].allocated), in every cell; the larger is taken.
    allocated_overhead_bytes: int = 4608
    # One 512-byte block alive before the weights are built (after_load.allocated -
    # the simulated weight blocks = 512 B in all five models).
    load_overhead_bytes: int = 512
    # CUDA caching allocator constants, from c10/cuda/CUDACachingAllocator.cpp:
    # every block is a multiple of 512 B (kMinBlockSize); blocks up to 1 MiB
    # (kSmallSize) come from 2 MiB segments (kSmallBuffer); requests under 10 MiB
    # (kMinLargeAlloc) get a 20 MiB segment (kLargeBuffer); larger ones a segment
    # rounded up to 2 MiB (kRoundLarge). A free block is split only when the rest is
    # >= 512 B (small pool) or > 1 MiB (large pool): otherwise the whole block counts
    # in `allocated`. Simulating the load with these rules reproduces after_load
    # allocated, reserved and the load step peak to the byte for all five models.
    block_bytes: int = 512
    small_block_max: int = 1 * MiB
    small_segment_bytes: int = 2 * MiB
    large_segment_bytes: int = 20 * MiB
    large_alloc_min: int = 10 * MiB
    large_round_bytes: int = 2 * MiB
    # Reserved beyond allocated for everything allocated after the load (workspaces,
    # the KV cache growing by torch.cat, step transients), as a fraction of it: freed
    # blocks are too small for the next, larger request, and new segments are rounded.
    # Free blocks the load leaves behind of at least large_alloc_min (the lm_head's
    # segment, freed by tie_weights) are reused first. Fitted to minimise the worst
    # peak-reserved error over the cudnn-off cells: 0.18 (worst about 7 %: prefill-heavy
    # cells fragment less, 8 + 2000 decode and batch-8 eager ones more).
    dynamic_slack_fraction: float = 0.18
    # Where the cache balloons (Estimate.cache_balloons), the slack fraction does not
    # apply: once one layer's K or V tensor outgrows large_segment_bytes it gets a
    # segment of its own, rounded to 2 MiB, and the cache grows by torch.cat each step;
    # every 2 MiB of growth moves all of it to new, larger segments, and the old ones
    # stay cached (too small for any later request) until cudaMalloc fails, when the
    # allocator frees them and retries. Reserved (and NVML) then grow far past
    # allocated, up to the whole device, without running out. kv_segments.py replays
    # that churn on the rules above. Measured at batch 8, 8 + 2000
    # (benchmarks/results/calibration/b8-long-*.json): opt-1.3b 5.89 GB allocated,
    # 53.5 GB reserved; opt-2.7b 10.7 GB, 111.9 GB; with
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True opt-1.3b reserved 6.50 GB.
    source: str = (
        "calibrated: NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130, "
        "transformers 5.17.0, CUDA 13.0 (benchmarks/results/calibration)"
    )

    def pool_rules(self) -> PoolRules:
        return PoolRules(
            self.block_bytes,
            self.small_block_max,
            self.large_segment_bytes,
            self.large_alloc_min,
            self.large_round_bytes,
        )


DEFAULT = Calibration()


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
    model: ModelInfo = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    calibration: Calibration = field(default=DEFAULT, repr=False, compare=False)

    @cached_property
    def _shape(self) -> _Shape:
        return _Shape(
            self.model,
            self.prompt_tokens,
            self.batch,
            self.dtype,
            self.attn,
            self.backend,
            self.calibration,
        )

    def _check(self, token: int) -> None:
        if not 0 <= token < self.tokens:
            raise ValueError(f"token {token} is outside 0..{self.tokens - 1}")

    def kv_at(self, token: int) -> int:
        """KV cache bytes after step `token` (prompt + token positions)."""
        self._check(token)
        return self.model.kv_bytes_per_token(self.dtype, self.batch) * (self.prompt_tokens + token)

    def allocated_at(self, token: int) -> int:
        """Predicted allocated bytes after step `token` (when the engine samples it)."""
        self._check(token)
        return self._shape.steady(token)

    def step_peak_at(self, token: int) -> int:
        """Predicted peak allocated bytes during step `token`."""
        self._check(token)
        return self._shape.step_peak(token)

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
        )

    def kv_layer_tensor_bytes(self, token: int) -> int:
        """One layer's K (or V) tensor after step `token`: B x positions x hidden x e."""
        return (self.prompt_tokens + token) * self._shape.kv_row

    def for_tokens(self, tokens: int) -> Estimate:
        """The same run stopped after `tokens` new tokens (e.g. to compare a failed run)."""
        return estimate(self.model, tokens=tokens, **self.run_kwargs())

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("model", "calibration")}
        data["model"] = self.model.name if self.model else None
        data["params"] = self.model.params if self.model else None
        data["calibration"] = self.calibration.source
        return data


ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"  # the caching allocator's settings, from the environment


def expandable_segments(alloc_conf: str | None) -> bool:
    """Whether a PYTORCH_CUDA_ALLOC_CONF value turns expandable segments on."""
    return "expandable_segments:true" in (alloc_conf or "").replace(" ", "").lower()


def fragmentation_warning(est: Estimate) -> str | None:
    """One line where the allocator's cache will balloon, else None."""
    if not est.cache_balloons:
        return None
    return (
        f"reserved grows to ~{_gb(est.peak_reserved_bytes)} (KV cache segments too small to "
        f"reuse; capped by the GPU, freed before an OOM; the run needs "
        f"{_gb(est.required_bytes)}): PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True avoids it"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _kv_outgrows_shared_segments(shape: _Shape, tokens: int) -> bool:
    """During decode one layer's K tensor grows past the 20 MiB shared segments by at
    least one 2 MiB segment size. The line is drawn from the H200 cells: every one past
    it ballooned (opt-125m at batch 8 and 8 + 2000, whose tensors end at 24.7 MB, the
    smallest), none below it did (opt-6.7b at batch 1 and 8 + 2000 ends at 16.4 MB;
    2000 + 1 grows by one position)."""
    if tokens < 2:
        return False
    cal = shape.cal
    start = max(shape.P * shape.kv_row, cal.large_segment_bytes)
    return (shape.P + tokens - 1) * shape.kv_row - start >= cal.large_round_bytes


def sample_tokens(tokens: int, points: int) -> list[int]:
    """Up to `points` evenly spread token indices in 0..tokens-1, ends included."""
    if tokens <= 0 or points <= 0:
        return []
    if tokens <= points or points == 1:
        return list(range(tokens)) if tokens <= points else [tokens - 1]
    step = (tokens - 1) / (points - 1)
    return sorted({round(i * step) for i in range(points)})


def param_tensors(model: ModelInfo) -> list[int]:
    """Element counts of OPT's parameter tensors, in the order the model creates them.

    The lm_head is tied to embed_tokens and owns no storage. Sums to model.params.
    """
    h, f, p = model.hidden, model.ffn, model.word_embed_proj_dim
    out = [model.vocab * p, (model.positions + OPT_POSITION_OFFSET) * h]
    if p != h:
        out += [h * p, p * h]  # project_out, project_in (no bias)
    if model.do_layer_norm_before:
        out += [h, h]  # the decoder's final LayerNorm
    layer = [h * h, h] * 4  # k, v, q, out projections with biases
    layer += [h, h]  # self_attn_layer_norm
    layer += [f * h, f, h * f, h]  # fc1, fc2
    layer += [h, h]  # final_layer_norm
    return out + layer * model.layers


class _Shape:
    """The run's dimensions and the byte size of every tensor the model traces show."""

    def __init__(
        self,
        model: ModelInfo,
        prompt: int,
        batch: int,
        dtype: str,
        attn: str,
        backend: str,
        cal: Calibration,
    ) -> None:
        self.m, self.P, self.B, self.attn, self.cal = model, prompt, batch, attn, cal
        self.dtype, self.backend = dtype, backend
        self.e = DTYPE_BYTES[dtype]
        self.cuda = backend == "cuda"
        if self.cuda:
            # What the allocator holds after the load (the weights' blocks, remainders
            # too small to split included) and its peak while the untied lm_head lived.
            self.load = load_figures(model, self.e, cal)
            self.weights = self.load.allocated
            self.load_peak = self.load.peak
        else:
            # No caching allocator: the tensors' bytes; the lm_head built before
            # tie_weights still adds its matrix to the load's peak.
            self.weights = sum(n * self.e for n in param_tensors(model))
            self.load_peak = self.weights + model.vocab * model.word_embed_proj_dim * self.e
        # The cuBLAS and cuBLASLt workspaces appear at the first matmul (in the
        # prefill) and stay.
        self.workspace = (
            cal.cublas_workspace_bytes + cal.cublaslt_workspace_bytes if self.cuda else 0
        )
        self.logit_row = self.blk(self.B * model.vocab * FLOAT32)  # L
        # One layer's K (or V) for one position: B x hidden x e bytes.
        self.kv_row = self.B * model.hidden * self.e
        # Bookkeeping blocks measured on CUDA; the CPU traces show none to speak of.
        self.overhead = cal.allocated_overhead_bytes if self.cuda else 0

    def blk(self, nbytes: int) -> int:
        """What one tensor of `nbytes` counts in `allocated`: CUDA rounds up to 512 B;
        the CPU allocator reports the bytes asked for."""
        if not self.cuda or nbytes == 0:
            return nbytes
        b = self.cal.block_bytes
        return -(-nbytes // b) * b

    def kv(self, positions: int) -> int:
        """The DynamicCache: one K and one V tensor per layer, B x H x positions x head_dim."""
        return 2 * self.m.layers * self.blk(positions * self.kv_row)

    def book(self, i: int) -> int:
        """int64 ids and masks on the device after step i: the engine's prompt ids and
        mask, the copy of the prompt ids generate keeps for the whole run (P each),
        generate's input_ids from step 1 on (P + i) and its attention mask, already
        grown by one column for the next step (P + i + 1)."""
        P, B = self.P, self.B
        lengths = [P, P, P, P + i + 1] + ([P + i] if i >= 1 else [])
        return sum(self.blk(B * n * INT64) for n in lengths)

    def logits_steady(self, i: int) -> int:
        """Logits alive when the engine samples step i: the model output (B x 1 x V, model
        dtype; generate asks for the last position only), its float32 copy, the scores
        the min-length processors returned, and from step 1 on the previous step's
        scores (generate rebinds `next_token_scores` only after the processors ran)."""
        rows = 3 if i >= 1 else 2
        return self.blk(self.B * self.m.vocab * self.e) + rows * self.logit_row

    def steady(self, i: int) -> int:
        """Allocated after step i, when the engine samples it."""
        return (
            self.weights
            + self.kv(self.P + i)
            + self.book(i)
            + self.workspace
            + self.logits_steady(i)
            + self.overhead
        )

    def processors(self) -> int:
        """Above steady, inside the logits processors. min_new_tokens=N makes generate add
        both MinLength and MinNewTokensLength processors; the second, at its
        torch.where, holds the first one's result, its own clone of the scores,
        arange(V) (int64) and the eos mask (bool, V)."""
        V = self.m.vocab
        return 2 * self.logit_row + self.blk(V * INT64) + self.blk(V)

    def forward(self, q: int, n: int) -> int:
        """Largest allocation above weights + KV(n) + ids during the forward of a step
        with q new positions and n cached positions after it (last layer, where the
        cache of every layer is already in)."""
        m, B, e, blk = self.m, self.B, self.e, self.blk
        X = blk(B * q * m.hidden * e)
        F = blk(B * q * m.ffn * e)
        ln = 1 if m.do_layer_norm_before else 0
        # OPTDecoder keeps inputs_embeds (after project_in) and the position embeddings
        # as locals for the whole forward.
        embeds = 2 * X
        # The cat that grows the last layer's V: the layer input, its LayerNorm (pre-LN
        # models), q (q_proj * scaling), k and v still held by the caller, and the old
        # V of n - q positions next to its new copy (the new one is in KV(n)).
        cat = embeds + X + ln * X + 3 * X + blk(B * (n - q) * m.hidden * e)
        # The MLP of the last layer: layer input, residual, fc1 output and its ReLU
        # (not in place) at once.
        mlp = embeds + 2 * X + 2 * F
        if self.attn == "sdpa":
            # flash / memory-efficient kernels (CUDA) and the CPU flash kernel keep no
            # score matrix: output + log-sum-exp sit below the cat moment above.
            return max(cat, mlp)
        # eager_attention_forward (transformers/models/opt/modeling_opt.py):
        #   scores = matmul(q, k^T) * scaling   matmul copies q (not viewable as 3-D): X
        #                                        then two score tensors for the product
        #   scores = scores + mask               two score tensors again
        #   softmax(scores, dtype=float32)       a float32 copy; on CUDA fp16 the kernel
        #                                        upcasts in place of a converted input,
        #                                        bf16 (and any half type on CPU) first
        #                                        converts to float32: one more
        #   .to(query.dtype)                     back to the model dtype: a third
        #   matmul(w, v).transpose().contiguous() output and its contiguous copy
        # and the causal mask (B x 1 x q x n, model dtype) lives for the whole forward.
        # The layer keeps the weights (`hidden_states, _ = self.self_attn(...)`) in `_`
        # through its MLP.
        S = blk(B * m.heads * q * n * e)
        S32 = blk(B * m.heads * q * n * FLOAT32)
        mask = blk(B * q * n * e)
        upcast_copy = S32 if e != FLOAT32 and not (self.cuda and self.dtype == "float16") else 0
        back = S if e != FLOAT32 else 0
        scores = max(X + S, 2 * S, S + S32 + max(upcast_copy, back), S + 2 * X)
        attention = embeds + X + ln * X + X + scores  # input, LayerNorm, q, scores
        return mask + max(cat, attention, mlp + S)

    def step_peak(self, i: int) -> int:
        q, n = (self.P, self.P) if i == 0 else (1, self.P + i)
        # Carried into a decode step: the previous float32 logits and scores.
        carried = 2 * self.logit_row if i >= 1 else 0
        during_forward = (
            self.weights
            + self.kv(n)
            + self.book(i)
            + self.workspace
            + carried
            + self.forward(q, n)
            + self.overhead
        )
        return max(during_forward, self.steady(i) + self.processors())

    def reserved_for(self, peak_allocated: int) -> int:
        """Peak reserved: the load's segments (simulated exactly), then whatever the run
        allocated beyond the load, inflated by fragmentation (see Calibration), less
        the large free blocks the load left (the freed lm_head segment), which the
        workspace, the KV cache and the transients reuse first."""
        if not self.cuda:
            return peak_allocated  # no caching allocator: nothing reserved beyond use
        cal = self.cal
        dynamic = max(0, peak_allocated - self.weights)
        demand = int(dynamic * (1 + cal.dynamic_slack_fraction)) - self.load.reusable
        # At least one small segment: the cuBLASLt workspace and the ids and masks.
        grown = max(_round_up(max(demand, 0), cal.large_round_bytes), cal.small_segment_bytes)
        return max(self.load.reserved + grown, peak_allocated)


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class _Allocator:
    """The CUDA caching allocator's bookkeeping for one stream, as in
    CUDACachingAllocator.cpp: best fit (smallest free block of the pool that is big
    enough, lowest address first), split when the rest is worth a block of its pool,
    neighbours merged on free, segments never given back (no empty_cache)."""

    def __init__(self, cal: Calibration) -> None:
        self.cal = cal
        # Segments in the order they were reserved; a segment is [is_small, blocks],
        # a block is [size, owner id or 0 when free].
        self.segments: list[tuple[bool, list[list[int]]]] = []
        self.allocated = self.reserved = self.peak = 0
        self._next = 0

    def _segment_size(self, size: int, small: bool) -> int:
        cal = self.cal
        if small:
            return cal.small_segment_bytes
        if size < cal.large_alloc_min:
            return cal.large_segment_bytes
        return _round_up(size, cal.large_round_bytes)

    def malloc(self, nbytes: int) -> int:
        cal = self.cal
        size = _round_up(max(nbytes, 1), cal.block_bytes)
        small = size <= cal.small_block_max
        best: tuple[int, list[list[int]], int] | None = None  # (size, blocks, index)
        for is_small, blocks in self.segments:
            if is_small != small:
                continue
            for i, (bsize, owner) in enumerate(blocks):
                if not owner and bsize >= size and (best is None or bsize < best[0]):
                    best = (bsize, blocks, i)
        if best is None:
            seg = self._segment_size(size, small)
            blocks = [[seg, 0]]
            self.segments.append((small, blocks))
            self.reserved += seg
            best = (seg, blocks, 0)
        bsize, blocks, i = best
        rest = bsize - size
        self._next += 1
        if rest >= (cal.block_bytes if small else cal.small_block_max + 1):
            blocks[i] = [size, self._next]
            blocks.insert(i + 1, [rest, 0])
        else:  # not worth splitting: the whole block is handed out, and counted
            blocks[i] = [bsize, self._next]
        self.allocated += blocks[i][0]
        self.peak = max(self.peak, self.allocated)
        return self._next

    def free(self, owner: int) -> None:
        for _small, blocks in self.segments:
            for i, block in enumerate(blocks):
                if block[1] != owner:
                    continue
                self.allocated -= block[0]
                block[1] = 0
                if i + 1 < len(blocks) and not blocks[i + 1][1]:
                    block[0] += blocks.pop(i + 1)[0]
                if i > 0 and not blocks[i - 1][1]:
                    blocks[i - 1][0] += blocks.pop(i)[0]
                return
        raise KeyError(owner)

    def free_blocks(self, at_least: int) -> int:
        """Bytes in free large-pool blocks of at least `at_least` bytes."""
        return sum(
            size
            for small, blocks in self.segments
            if not small
            for size, owner in blocks
            if not owner and size >= at_least
        )


@dataclass(frozen=True)
class LoadFigures:
    """The allocator after the engine built the model from its architecture."""

    allocated: int  # after load: the weights' blocks (with unsplit remainders)
    reserved: int  # after load
    peak: int  # during load: the weights and the not-yet-tied lm_head at once
    reusable: int  # free blocks of at least large_alloc_min (the freed lm_head's segment)
    free_large: tuple[int, ...] = ()  # every free large-pool block, in order


@lru_cache(maxsize=64)
def load_figures(model: ModelInfo, e: int, cal: Calibration) -> LoadFigures:
    """Simulate the load on the CUDA caching allocator. `from_config` under
    `torch.device("cuda")` creates every parameter in module order, then OPTForCausalLM
    its own lm_head (vocab x word_embed_proj_dim); `tie_weights` points it at
    embed_tokens and frees that matrix. Measured on the H200 (after_load): allocated,
    reserved and the load step peak match this simulation to the byte, 125m..6.7b."""
    alloc = _Allocator(cal)
    if cal.load_overhead_bytes:
        alloc.malloc(cal.load_overhead_bytes)
    for numel in param_tensors(model):
        alloc.malloc(numel * e)
    lm_head = alloc.malloc(model.vocab * model.word_embed_proj_dim * e)
    alloc.free(lm_head)
    free_large = tuple(
        size for small, blocks in alloc.segments if not small for size, owner in blocks if not owner
    )
    return LoadFigures(
        alloc.allocated,
        alloc.reserved,
        alloc.peak,
        alloc.free_blocks(cal.large_alloc_min),
        free_large,
    )


def segments_for(numels: list[int], e: int, cal: Calibration) -> int:
    """Bytes of the segments the CUDA caching allocator reserves for tensors allocated
    one after another and never freed (see _Allocator)."""
    alloc = _Allocator(cal)
    for numel in numels:
        alloc.malloc(numel * e)
    return alloc.reserved


def _check_args(
    model: ModelInfo,
    prompt_tokens: int,
    tokens: int,
    batch: int,
    dtype: str,
    attn: str,
    backend: str,
) -> None:
    if dtype not in DTYPE_BYTES:
        raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPE_BYTES)}")
    if attn not in ATTN:
        raise UsageError(f"unknown attention {attn!r}; choose from {', '.join(ATTN)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if prompt_tokens <= 0 or tokens <= 0 or batch <= 0:
        raise UsageError("prompt tokens, new tokens and batch must be positive")
    if prompt_tokens + tokens > model.positions:
        raise UsageError(
            f"prompt ({prompt_tokens}) + new tokens ({tokens}) exceeds {model.name}'s "
            f"limit of {model.positions} positions"
        )


def estimate(
    model: ModelInfo,
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
) -> Estimate:
    """Predict one run of `tokens` new tokens after a `prompt_tokens` prompt.

    backend "cuda" models torch's caching allocator and the CUDA context; "cpu"
    (and "mps", whose driver is not modelled) has no context term and reserves
    exactly what it allocates, and predicts tensor bytes, not the process RSS
    the engine reports there. `expandable_segments`: the allocator runs with
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (no ballooning cache).
    `replay_cache=False` skips replaying a ballooning cache (kv_segments.py, a
    fraction of a second): peak reserved and total are then what the run needs.
    """
    _check_args(model, prompt_tokens, tokens, batch, dtype, attn, backend)
    shape = _Shape(model, prompt_tokens, batch, dtype, attn, backend, calibration)
    # Every term grows with the step index in decode, so the largest decode figures
    # are those of the last step; the prefill (token 0) is the other candidate.
    candidates = sorted({0, min(1, tokens - 1), tokens - 1})
    generate_peak = max(shape.step_peak(i) for i in candidates)
    # torch's max_memory_allocated covers the load too: at 8 + 20 tokens the load's
    # peak (weights + the untied lm_head) is the run's peak for every OPT model.
    peak_allocated = max(shape.load_peak, generate_peak)
    transient = max(shape.step_peak(i) - shape.steady(i) for i in candidates)
    # Segments are never given back, so the reserved peak also covers the load's
    # (on CUDA the load's segments are already in; off CUDA reserved = allocated).
    needed_reserved = max(shape.reserved_for(generate_peak), peak_allocated)
    peak_reserved = needed_reserved
    balloons = (
        shape.cuda and not expandable_segments and _kv_outgrows_shared_segments(shape, tokens)
    )
    if balloons and replay_cache:
        # the load's free blocks, then the cuBLAS workspaces, then the cache's churn
        grown = kv_cache_reserve(
            calibration.pool_rules(),
            shape.load.free_large,
            (calibration.cublas_workspace_bytes, calibration.cublaslt_workspace_bytes),
            model.layers,
            shape.kv_row,
            prompt_tokens,
            tokens,
        )
        peak_reserved = max(peak_reserved, shape.load.reserved + grown)
    context = calibration.cuda_context_bytes + calibration.cuda_libraries_bytes
    context = context if shape.cuda else 0  # no CUDA context off CUDA
    kv_final = model.kv_bytes_per_token(dtype, batch) * (prompt_tokens + tokens - 1)
    return Estimate(
        weights_bytes=model.weights_bytes(dtype),
        kv_cache_bytes=kv_final,
        transient_bytes=transient,
        slack_bytes=max(0, peak_reserved - peak_allocated),
        context_bytes=context,
        peak_allocated_bytes=peak_allocated,
        peak_reserved_bytes=peak_reserved,
        peak_total_bytes=peak_reserved + context,
        load_peak_bytes=shape.load_peak,
        required_bytes=needed_reserved + context,
        cache_balloons=balloons,
        expandable_segments=expandable_segments,
        prompt_tokens=prompt_tokens,
        tokens=tokens,
        batch=batch,
        dtype=dtype,
        attn=attn,
        backend=backend,
        model=model,
        calibration=calibration,
    )


def max_tokens_that_fit(
    model: ModelInfo,
    memory_bytes: int,
    *,
    prompt_tokens: int = 8,
    batch: int = 1,
    dtype: str = "float16",
    attn: str = "sdpa",
    backend: str = "cuda",
    calibration: Calibration = DEFAULT,
    expandable_segments: bool = False,
) -> int:
    """The largest number of new tokens whose predicted need (`required_bytes`: the
    peak total less any ballooning cache, which is freed before an OOM) fits
    `memory_bytes`.

    0 when not even one token fits (the weights, or the prefill, are too large);
    never more than the model's positions allow after the prompt.
    """
    cap = model.positions - prompt_tokens

    def fits(n: int) -> bool:
        e = estimate(
            model,
            prompt_tokens=prompt_tokens,
            tokens=n,
            batch=batch,
            dtype=dtype,
            attn=attn,
            backend=backend,
            calibration=calibration,
            expandable_segments=expandable_segments,
            replay_cache=False,
        )
        return e.required_bytes <= memory_bytes

    if cap <= 0 or not fits(1):
        return 0
    lo, hi = 1, cap  # fits(lo) holds; the peak grows with the number of tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# OPTConfig's defaults (transformers), for keys a config.json leaves out.
_OPT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50272,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "ffn_dim": 3072,
    "num_attention_heads": 12,
    "max_position_embeddings": 2048,
    "do_layer_norm_before": True,
}


def model_info_for_config(config: dict[str, Any]) -> ModelInfo | None:
    """A ModelInfo for an OPT config.json dict; None for other model types, and for
    OPT variants whose parameters ModelInfo cannot count (no biases, LayerNorms
    without weights, untied lm_head, final LayerNorm removed)."""
    if config.get("model_type") != "opt":
        return None
    if (
        config.get("enable_bias", True) is not True
        or config.get("layer_norm_elementwise_affine", True) is not True
        or config.get("tie_word_embeddings", True) is not True
        or config.get("_remove_final_layer_norm", False)
    ):
        return None
    values = {**_OPT_DEFAULTS, **{k: config[k] for k in _OPT_DEFAULTS if k in config}}
    ints = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "ffn_dim",
        "num_attention_heads",
        "max_position_embeddings",
    )
    if not all(isinstance(values[k], int) and values[k] > 0 for k in ints):
        return None
    hidden = values["hidden_size"]
    proj = config.get("word_embed_proj_dim") or hidden
    if not isinstance(proj, int) or proj <= 0 or hidden % values["num_attention_heads"]:
        return None
    return ModelInfo(
        name=str(config.get("_name_or_path") or "opt (config)"),
        hidden=hidden,
        layers=values["num_hidden_layers"],
        heads=values["num_attention_heads"],
        ffn=values["ffn_dim"],
        vocab=values["vocab_size"],
        positions=values["max_position_embeddings"],
        word_embed_proj_dim=proj,
        do_layer_norm_before=bool(values["do_layer_norm_before"]),
    )


__all__ = [
    "DEFAULT",
    "Calibration",
    "Estimate",
    "LoadFigures",
    "estimate",
    "load_figures",
    "max_tokens_that_fit",
    "model_info_for_config",
    "param_tensors",
    "sample_tokens",
    "segments_for",
]
