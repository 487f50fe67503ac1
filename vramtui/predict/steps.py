"""The tensors alive at each moment of a generation step, by name and size.

Pure. It models what the engine does with transformers' `generate`: greedy,
exactly N new tokens, a `DynamicCache` that grows by `torch.cat`, and a sample
taken right after the forward that produced each token (token 0's step is the
prefill forward over the whole prompt).

Every tensor alive at each moment of a step was traced with the CPU allocator
(torch profiler, `profile_memory=True`, transformers 5.24, OPT): the model
below reproduces those traces to within a few kilobytes on the CPU. Sizes are
what the allocator counts: on CUDA rounded up to 512 B blocks.

A step has `new` positions going in (the prompt for the prefill, 1 for a decode
step) and `cached` positions in the cache after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.models.architecture import DTYPE_BYTES, ModelInfo
from vramtui.predict.calibration import Calibration
from vramtui.predict.kv_replay import PrefillRequests
from vramtui.predict.load import LoadFigures, load_figures, load_items
from vramtui.predict.quant_kv import QuantizedKv
from vramtui.predict.quantized import QuantPlan

INT64 = 8  # input ids and attention masks are int64
FLOAT32 = 4  # generate converts the last position's logits to float32


def softmax_copies_input(dtype: str, cuda: bool) -> bool:
    """Whether softmax(scores, dtype=float32) first copies its input to float32: it does
    for bfloat16 and on the CPU, not for float32 (nothing to convert) nor for float16 on
    CUDA, whose kernel reads the half input and writes float32 (at::softmax's
    half_to_float)."""
    return dtype != "float32" and not (cuda and dtype == "float16")


@dataclass(frozen=True)
class TransientBlocks:
    """A step's transient for the allocator replay: blocks it makes and frees, and the
    bytes it reserves in segments of their own."""

    replayed: tuple[int, ...]
    beside: int


class StepModel:
    """One run's shape, and the bytes allocated during and after each of its steps."""

    def __init__(
        self,
        model: ModelInfo,
        prompt: int,
        batch: int,
        dtype: str,
        attn: str,
        backend: str,
        cal: Calibration,
        static_positions: int = 0,
        quant: QuantPlan | None = None,
        kv_quant: QuantizedKv | None = None,
    ) -> None:
        # A static cache holds every position of the run from the prefill on.
        self.static_positions = static_positions
        self.quant, self.kv_quant = quant, kv_quant  # --quant, --cache quantized
        self.model, self.prompt, self.batch, self.attn, self.cal = model, prompt, batch, attn, cal
        self.dtype, self.backend = dtype, backend
        self.elem_bytes = DTYPE_BYTES[dtype]
        self.cuda = backend == "cuda"
        self.load_weights()
        # The cuBLAS and cuBLASLt workspaces appear at the first matmul (in the
        # prefill) and stay.
        self.workspace = (
            cal.cublas_workspace_bytes + cal.cublaslt_workspace_bytes if self.cuda else 0
        )
        # One float32 row of logits per sequence.
        self.logit_row = self.block(batch * model.vocab * FLOAT32)
        self.kv_row = self.kv_position_bytes()
        # Bookkeeping blocks measured on CUDA; the CPU traces show none to speak of.
        self.overhead = cal.allocated_overhead_bytes if self.cuda else 0

    def kv_position_bytes(self) -> int:
        """One layer's K (or V) for one position: batch x hidden x bytes."""
        return self.batch * self.model.hidden * self.elem_bytes

    def kv_growth_shape(self, last: int) -> tuple[int, int]:
        """(one layer's K or V for one position, the layers whose cache grows every step
        up to `last` positions): every layer."""
        return self.kv_position_bytes(), self.model.layers

    def load_weights(self) -> None:
        if self.cuda:
            # What the allocator holds after the load (the weights' blocks, remainders
            # too small to split included) and its peak during it (predict/load.py).
            self.load = self.allocator_load()
            self.weights = self.load.allocated
            self.load_peak = self.load.peak
        else:
            # No caching allocator: the tensors' bytes, allocated once each.
            self.weights = self.load_peak = self.tensor_bytes()

    def allocator_load(self) -> LoadFigures:
        if self.quant is not None:
            items = tuple(item.ops for item in self.quant.items)
            return load_items(items, self.quant.warmup_bytes, self.later_buffers(), self.cal)
        return load_figures(self.model, self.elem_bytes, self.cal)

    def later_buffers(self) -> tuple[int, ...]:
        """Buffers a checkpoint does not hold, made once the weights are in."""
        return ()

    def tensor_bytes(self) -> int:
        if self.quant is not None:
            return self.quant.weights.total_bytes + sum(self.later_buffers())
        return self.model.params * self.elem_bytes

    def kv_rows(self) -> tuple[int, ...]:
        """Each layer's K (or V) for one position."""
        return (self.kv_position_bytes(),) * self.model.layers

    def quantized_kv(self, kv_quant: QuantizedKv, positions: int) -> int:
        """The quantized cache holding `positions` positions: each layer's quantized
        data, scale and shift, and its residual window, for K and for V."""
        quantized, window = kv_quant.split(self.prompt, positions - self.prompt)
        total = 0
        for row in self.kv_rows():
            held = (*kv_quant.quantized_tensors(row, quantized), window * row)
            total += 2 * sum(self.block(nbytes) for nbytes in held)
        return total

    def quant_transient(self, step: int) -> int:
        """Above the unquantized forward: the dequantized weight (predict/quantized.py)
        and the quantized cache's full-precision copies of one layer (quant_kv.py)."""
        new = self.prompt if step == 0 else 1
        extra = self.quant.dequant_bytes(self.batch * new) if self.quant is not None else 0
        if self.kv_quant is not None:
            rows = self.kv_rows()
            widest = max(rows, default=0)
            extra += self.kv_quant.step_transient(widest, self.prompt, step)
        return extra

    def block(self, nbytes: int) -> int:
        """What one tensor of `nbytes` counts in `allocated`: CUDA rounds up to 512 B;
        the CPU allocator reports the bytes asked for."""
        if not self.cuda or nbytes == 0:
            return nbytes
        return self.cal.rules.block_size(nbytes)

    def kv(self, positions: int) -> int:
        """The DynamicCache: one K and one V tensor per layer, batch x positions x hidden
        (a static cache: the run's every position, always)."""
        if self.kv_quant is not None:
            return self.quantized_kv(self.kv_quant, positions)
        positions = self.static_positions or positions
        return 2 * self.model.layers * self.block(positions * self.kv_row)

    def ids_and_masks(self, step: int) -> int:
        """int64 ids and masks on the device after `step`: the engine's prompt ids and
        mask, the copy of the prompt ids generate keeps for the whole run (prompt each),
        generate's input_ids from step 1 on (prompt + step) and its attention mask,
        already grown by one column for the next step (prompt + step + 1)."""
        p = self.prompt
        lengths = [p, p, p, p + step + 1] + ([p + step] if step >= 1 else [])
        return sum(self.block(self.batch * n * INT64) for n in lengths)

    def logits_after(self, step: int) -> int:
        """Logits alive when the engine samples `step`: the model output (batch x 1 x
        vocab, model dtype; generate asks for the last position only), its float32 copy,
        the scores the min-length processors returned, and from step 1 on the previous
        step's scores (generate rebinds `next_token_scores` only after the processors)."""
        rows = 3 if step >= 1 else 2
        return self.block(self.batch * self.model.vocab * self.elem_bytes) + rows * self.logit_row

    def steady(self, step: int) -> int:
        """Allocated after `step`, when the engine samples it."""
        return (
            self.weights
            + self.kv(self.prompt + step)
            + self.ids_and_masks(step)
            + self.workspace
            + self.logits_after(step)
            + self.overhead
        )

    def processors(self) -> int:
        """Above steady, inside the logits processors. min_new_tokens=N makes generate add
        both MinLength and MinNewTokensLength processors; the second, at its
        torch.where, holds the first one's result, its own clone of the scores,
        arange(vocab) (int64) and the eos mask (bool, vocab)."""
        vocab = self.model.vocab
        return 2 * self.logit_row + self.block(vocab * INT64) + self.block(vocab)

    def forward(self, new: int, cached: int) -> int:
        """Largest allocation above weights + KV(cached) + ids during the forward of a
        step (last layer, where the cache of every layer is already in)."""
        m, block = self.model, self.block
        rows = self.batch * new
        hidden_act = block(rows * m.hidden * self.elem_bytes)  # one hidden-state activation
        ffn_act = block(rows * m.ffn * self.elem_bytes)  # one MLP intermediate
        pre_ln = 1 if m.do_layer_norm_before else 0
        # OPTDecoder keeps inputs_embeds (after project_in) and the position embeddings
        # as locals for the whole forward.
        embeds = 2 * hidden_act
        # The cat that grows the last layer's V: the layer input, its LayerNorm (pre-LN
        # models), q (q_proj * scaling), k and v still held by the caller, and the old
        # V of cached - new positions next to its new copy (the new one is in KV(cached)).
        old_v = block(self.batch * (cached - new) * m.hidden * self.elem_bytes)
        cat = embeds + hidden_act + pre_ln * hidden_act + 3 * hidden_act + old_v
        # The MLP of the last layer: layer input, residual, fc1 output and its ReLU
        # (not in place) at once.
        mlp = embeds + 2 * hidden_act + 2 * ffn_act
        if self.attn == "sdpa":
            # flash / memory-efficient kernels (CUDA) and the CPU flash kernel keep no
            # score matrix: output + log-sum-exp sit below the cat moment above.
            return max(cat, mlp)
        return self._eager_forward(new, cached, hidden_act, embeds, pre_ln, cat, mlp)

    def _eager_forward(
        self, new: int, cached: int, hidden_act: int, embeds: int, pre_ln: int, cat: int, mlp: int
    ) -> int:
        """eager_attention_forward (transformers/models/opt/modeling_opt.py):
          scores = matmul(q, k^T) * scaling   matmul copies q (not viewable as 3-D),
                                               then two score tensors for the product
          scores = scores + mask              two score tensors again
          softmax(scores, dtype=float32)      a float32 copy; on CUDA fp16 the kernel
                                               upcasts in place of a converted input,
                                               bf16 (and any half type on CPU) first
                                               converts to float32: one more
          .to(query.dtype)                    back to the model dtype: a third
          matmul(w, v).transpose().contiguous()  output and its contiguous copy
        and the causal mask (batch x 1 x new x cached, model dtype) lives for the whole
        forward. The layer keeps the weights (`hidden_states, _ = self.self_attn(...)`)
        in `_` through its MLP."""
        e, block = self.elem_bytes, self.block
        score_elems = self.batch * self.model.heads * new * cached
        scores = block(score_elems * e)
        scores32 = block(score_elems * FLOAT32)
        mask = block(self.batch * new * cached * e)
        upcast_copy = scores32 if softmax_copies_input(self.dtype, self.cuda) else 0
        back = scores if e != FLOAT32 else 0
        softmax = max(
            hidden_act + scores,
            2 * scores,
            scores + scores32 + max(upcast_copy, back),
            scores + 2 * hidden_act,
        )
        attention = embeds + hidden_act + pre_ln * hidden_act + hidden_act + softmax
        return mask + max(cat, attention, mlp + scores)

    def step_peak(self, step: int) -> int:
        """The highest allocated figure during `step`."""
        new, cached = (self.prompt, self.prompt) if step == 0 else (1, self.prompt + step)
        # Carried into a decode step: the previous float32 logits and scores.
        carried = 2 * self.logit_row if step >= 1 else 0
        during_forward = (
            self.weights
            + self.kv(cached)
            + self.ids_and_masks(step)
            + self.workspace
            + carried
            + self.forward(new, cached)
            + self.quant_transient(step)
            + self.overhead
        )
        return max(during_forward, self.steady(step) + self.processors())

    def prefill_requests(self) -> PrefillRequests | None:
        """The prefill's requests in order, where a trace holds them (traced_steps.py);
        here none: the prefill's transient is sized by `transient_blocks`."""
        return None

    def transient_blocks(self, transient: int, prefill: bool) -> TransientBlocks:
        """A step's transient as the cache's replay places it: the dequantized weight's
        tensors (the prefill's rows or a decode step's) each a block of its own, and the
        rest reserved as
        `transient_reserve` says: one block where it takes a segment of its own, else
        beside the replay (small tensors share segments a single block would not)."""
        rows = self.batch * (self.prompt if prefill else 1)
        pieces = self.quant.dequant_tensors(rows) if self.quant else ()
        pieces = tuple(self.block(n) for n in pieces)
        rest = self.transient_reserve(max(0, transient - sum(pieces)))
        if rest >= self.cal.rules.large_alloc_min:
            return TransientBlocks((*pieces, rest), 0)
        return TransientBlocks(pieces, rest)

    def transient_reserve(self, transient: int) -> int:
        """Segments a step's transients add beyond the KV cache's (see Calibration)."""
        unit = self.cal.rules.large_round_bytes
        return -(-int(transient * self.cal.transient_reserve_factor) // unit) * unit

    def reserved_for(self, peak_allocated: int) -> int:
        """Reserved when the cache's segments are not replayed (off CUDA, expandable
        segments, or what a run needs once a ballooning cache is freed): the load's
        segments (simulated exactly), then whatever the run allocated beyond the load,
        inflated by fragmentation (see Calibration), less the large free blocks the
        load left, which the workspace, the KV cache and the transients reuse first."""
        if not self.cuda:
            return peak_allocated  # no caching allocator: nothing reserved beyond use
        rules = self.cal.rules
        dynamic = max(0, peak_allocated - self.weights)
        demand = int(dynamic * (1 + self.cal.dynamic_slack_fraction)) - self.load.reusable
        # At least one small segment: the cuBLASLt workspace and the ids and masks.
        rounded = -(-max(demand, 0) // rules.large_round_bytes) * rules.large_round_bytes
        grown = max(rounded, rules.small_segment_bytes)
        return max(self.load.reserved + grown, peak_allocated)

    def kv_outgrows_shared_segments(self, tokens: int) -> bool:
        """During decode one layer's K tensor grows past the 20 MiB shared segments by at
        least one 2 MiB segment size. The line is drawn from the H200 cells: every one
        past it ballooned (opt-125m at batch 8 and 8 + 2000, whose tensors end at
        24.7 MB, the smallest), none below it did (opt-6.7b at batch 1 and 8 + 2000
        ends at 16.4 MB; 2000 + 1 grows by one position)."""
        if tokens < 2:
            return False
        rules = self.cal.rules
        row, layers = self.kv_growth_shape(self.prompt + tokens - 1)
        start = max(self.prompt * row, rules.large_segment_bytes)
        return layers > 0 and (self.prompt + tokens - 1) * row - start >= rules.large_round_bytes
