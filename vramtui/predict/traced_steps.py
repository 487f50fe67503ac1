"""The step model for any architecture, from a trace of its own code (tracing/).

The generate loop's terms (ids and masks, float32 logits and scores, the logits
processors, the cuBLAS workspaces) are the engine's and the same for every
model: they come from StepModel. What the model itself does comes from the
trace: the checkpoint's tensors for the load, the cache's layout (sliding
layers capped at their window) and each forward's peak above the weights and
the cache it leaves.
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property

from vramtui.predict.calibration import Calibration
from vramtui.predict.kv_replay import PrefillRequests
from vramtui.predict.load import LoadFigures, load_sizes
from vramtui.predict.quant_kv import QuantizedKv
from vramtui.predict.quantized import QuantPlan
from vramtui.predict.steps import StepModel
from vramtui.predict.tracing.traces import KvLayer, Trace


class TracedSteps(StepModel):
    """StepModel with the model's own terms read from its trace."""

    def __init__(
        self,
        trace: Trace,
        cal: Calibration,
        static_positions: int = 0,
        quant: QuantPlan | None = None,
        kv_quant: QuantizedKv | None = None,
    ) -> None:
        self.trace = trace
        super().__init__(
            trace,  # type: ignore[arg-type]  # the fields StepModel reads: vocab, name
            trace.prompt,
            trace.batch,
            trace.dtype,
            trace.attn,
            trace.backend,
            cal,
            static_positions,
            quant,
            kv_quant,
        )

    def kv_position_bytes(self) -> int:
        """The widest layer's K (or V) for one position."""
        return max((layer.row for layer in self.trace.layers), default=0)

    def kv_growth_shape(self, last: int) -> tuple[int, int]:
        """Layers whose window `last` positions do not fill grow every step."""
        growing = [layer.row for layer in self.trace.layers if layer.held(last) == last]
        return max(growing, default=0), len(growing)

    def allocator_load(self) -> LoadFigures:
        if self.quant is not None:
            return super().allocator_load()
        return load_sizes(self.trace.tensors, self.trace.buffers, self.cal)

    def later_buffers(self) -> tuple[int, ...]:
        return self.trace.buffers

    def tensor_bytes(self) -> int:
        if self.quant is not None:
            return super().tensor_bytes()
        return self.trace.weights_bytes()

    def kv_rows(self) -> tuple[int, ...]:
        return tuple(layer.row for layer in self.trace.layers)

    def kv(self, positions: int) -> int:
        if self.kv_quant is not None:
            return self.quantized_kv(self.kv_quant, positions)
        positions = self.static_positions or positions
        return sum(
            2 * count * self.block(layer.row * layer.held(positions))
            for layer, count in self._layer_counts.items()
        )

    @cached_property
    def _layer_counts(self) -> Counter[KvLayer]:
        """The cache's distinct layers (row and window), each with how many there are."""
        return Counter(self.trace.layers)

    def forward(self, new: int, cached: int) -> int:
        trace = self.trace
        if new == trace.prompt and cached == trace.prompt:
            return trace.prefill.extra
        # between traced lengths the line is interpolated: whole blocks, as allocated
        extra = self.block(trace.decode_extra(cached))
        if self.static_positions and trace.query_row:
            # a static cache's decode has a mask, so sdpa gets K and V repeated for the
            # query heads over every position (transformers' use_gqa_in_sdpa)
            repeated = 2 * self.block(trace.query_row * self.static_positions)
            extra = max(extra, repeated)
        return extra

    def prefill_requests(self) -> PrefillRequests | None:
        """The traced prefill's requests, where the replay can follow them: a cache of
        full-precision tensors, one a layer for K and one for V of the same size, none
        sliding (their churn is the replay's), not quantized, not static."""
        trace = self.trace
        kv = trace.prefill_kv
        plain = self.quant is None and self.kv_quant is None and not self.static_positions
        layers = trace.layers
        uniform = len(set(layers)) == 1 and not layers[0].window
        if not (plain and uniform and trace.prefill_events and len(kv) == 2 * len(layers)):
            return None
        if min(kv) < 0 or len(set(kv)) != len(kv):
            return None  # a tensor of the cache not made by the prefill, or shared
        return PrefillRequests(trace.prefill_events, kv)
