"""A quantized model as the step model sees it: its weights' tensors, what the
loader has alive while it converts each weight, and what a forward dequantizes.

Pure arithmetic. The storage rules are quant_storage.py's. The meta-device
tracer cannot run the quantizers' kernels (bitsandbytes, torchao), so the two
transients below are modelled from their source, not traced:

Load (transformers' loader, core_model_loading.py, integrations/bitsandbytes.py
and torchao.py): quantizing on the fly, the loader reads one tensor at a time (its
threads are off, so 16-bit weights do not pile up ahead of the quantizer); every
weight arrives on the device in the model's dtype and is converted there; while
it is, the 16-bit weight, the quantizer's working copies and its output are
alive together, then the 16-bit weight is freed:
- LLM.int8: the loader's 16-bit tensor stays referenced while Int8Params makes
  its own float16 copy on the device, then CB and SCB;
- 4-bit: the 16-bit weight, the float32 absmax (kept or, with double quant,
  quantized to uint8 around its mean: it and its difference from the mean are
  freed), the packed weight;
- torchao int8 weight-only (quantize_affine): the 16-bit weight; `input * (1 /
  scale)` in float32 and its round(), alive together, both freed before the int8
  data is made;
- torchao float8 weight-only (_quantize_affine_float8): the 16-bit weight and three
  float32 copies (the cast, the scaled and the clamped tensor, each kept by a local)
  alive when the float8 data is made;
- torchao int4 weight-only (Int4TilePackedTo4dTensor.from_hp): the 16-bit weight,
  its padded copy (F.pad copies even when nothing is padded) and the int32 integer
  data, alive to the end; packing makes `data[:, ::2] << 4` and its `|` with the odd
  columns (int32, half the elements each), freed before the packed weight is made.
The warm-up tensor transformers allocates first counts a converted weight at the
quantizer's element size (0.5 byte for 4-bit, 1 for 8-bit).

Forward (the step peaks): the largest converted layer's buffers are alive at
once with the forward's other activations:
- bitsandbytes 4-bit: for more than 4 rows (batch x new tokens) the weight is
  dequantized to the compute dtype before the matmul (bitsandbytes' fused kernel
  takes at most 4 rows for certain; between 5 and 1536 its per-GPU heuristic may
  keep it fused, so this is an upper bound there), with double quant its absmax
  in float32 twice;
- LLM.int8: the rows quantized to int8 with a float32 scale each, the int32
  product;
- torchao int8 weight-only: the weight cast to the compute dtype for every matmul;
  float8 weight-only: Float8Tensor.dequantize() for every matmul, a float32 cast,
  its product with the scale and that cast to the compute dtype, alive together;
  int4 weight-only: a fused kernel, nothing the size of a weight.
The torchao rules are checked against live bytes on the CPU (tests/test_quant_transients.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from vramtui.errors import UsageError
from vramtui.predict.load import KEPT, Op, held
from vramtui.predict.quant_storage import (
    BNB_BLOCK,
    FLOAT32,
    INT4_COLS,
    INT4_GROUP,
    INT4_ROWS,
    LinearWeight,
    QuantWeights,
    Stored,
    quantize_tensors,
    stored,
)

if TYPE_CHECKING:
    from vramtui.models.architecture import ModelInfo
    from vramtui.predict.tracing.traces import Trace

FUSED_4BIT_ROWS = 4  # bitsandbytes' gemm_4bit keeps its fused kernel up to 4 rows
WARMUP_ELEMENT = {"int8": 1.0, "nf4": 0.5, "fp4": 0.5, "int8-wo": 1.0, "int4-wo": 0.5, "fp8": 1.0}
FOUR_BIT = ("nf4", "fp4")


@dataclass(frozen=True)
class LoadItem:
    """One checkpoint tensor's load: every tensor its conversion makes, in order,
    each with the op after which it is freed (load.py's Op; KEPT: what it is stored
    as)."""

    ops: tuple[Op, ...]

    @property
    def peak(self) -> int:
        """The most bytes its tensors hold at once (no allocator rounding)."""
        live = top = 0
        for index, (nbytes, _) in enumerate(self.ops):
            live += nbytes
            top = max(top, live)
            live -= sum(size for size, after in self.ops if after == index)
        return top


@dataclass(frozen=True)
class QuantPlan:
    """A model's weights under one --quant method."""

    weights: QuantWeights
    elem_bytes: int
    items: tuple[LoadItem, ...]  # in the loader's order
    warmup_bytes: int  # transformers' caching_allocator_warmup tensor

    @property
    def method(self) -> str:
        return self.weights.method

    def dequant_bytes(self, rows: int) -> int:
        """What a forward of `rows` rows (batch x new tokens) holds above the
        unquantized model's activations, at its largest converted layer."""
        return sum(self.dequant_tensors(rows))

    def dequant_tensors(self, rows: int) -> tuple[int, ...]:
        """The tensors behind `dequant_bytes`, bytes each."""
        layers = (self._layer(shape, rows) for shape in self._shapes)
        return max(layers, key=sum, default=())

    @cached_property
    def _shapes(self) -> tuple[tuple[int, int], ...]:
        """The converted weights' distinct (rows, cols), first seen first: a layer's
        tensors depend on nothing else, and `max` keeps the first of equals."""
        return tuple(dict.fromkeys((lin.rows, lin.cols) for lin in self.weights.converted))

    def _layer(self, shape: tuple[int, int], rows: int) -> tuple[int, ...]:
        out_features, cols = shape
        method, e, n = self.method, self.elem_bytes, out_features * cols
        if method in FOUR_BIT:
            if rows <= FUSED_4BIT_ROWS:
                return ()
            blocks = -(-n // BNB_BLOCK)
            absmax = (blocks * FLOAT32,) * 2 if self.weights.double_quant else ()
            return (n * e, *absmax)
        if method == "int8":
            return (rows * cols, rows * FLOAT32, rows * out_features * 4)
        if method == "int8-wo":
            return (n * e,)
        if method == "fp8":
            return (n * FLOAT32, n * FLOAT32, n * e)
        return ()  # int4-wo: fused


def convert_ops(method: str, lin: LinearWeight, e: int, double_quant: bool) -> tuple[Op, ...]:
    """The tensors converting one weight makes, in the order the quantizer makes them."""
    n = lin.rows * lin.cols
    kept = stored(method, lin.rows, lin.cols, e, double_quant)
    if method == "int8":
        return held((n * e, n * 2), kept.tensors)  # the loader's tensor, Int8Params' copy
    if method in FOUR_BIT:
        blocks = -(-n // BNB_BLOCK)
        # double quant: the float32 absmax and `absmax - offset`, freed once nested
        absmax = (blocks * FLOAT32, blocks * FLOAT32) if double_quant else ()
        return held((n * e, *absmax), kept.tensors)
    state = tuple((nbytes, KEPT) for nbytes in kept.state)
    if method == "int8-wo":
        # input, scale and zero point; `input * (1 / scale)` (float32), round, + zero
        # point, clamp (each freed once the next is made), the int8 data
        f = n * FLOAT32
        return ((n * e, 7), *state, (f, 4), (f, 5), (f, 6), (f, 7), (n, KEPT))
    if method == "fp8":
        # input, abs (freed by amax), the scale; the float32 cast, scaled and clamped
        # copies (locals, freed on return), the float8 data
        f = n * FLOAT32
        return ((n * e, 6), (n * e, 2), *state, (f, 6), (f, 6), (f, 6), (n, KEPT))
    return _int4_ops(lin, e, kept)


def _int4_ops(lin: LinearWeight, e: int, kept: Stored) -> tuple[Op, ...]:
    """Int4TilePackedTo4dTensor.from_hp: the input and its padded copy (F.pad copies
    even when nothing is padded), the scales and zero points; `(x - min) / scale`,
    round, clamp in the model's dtype, then int32 (each freed once the next is made);
    packing: `data[:, ::2] << 4`, its `|` with the odd columns (int32, half the
    elements each), uint8, the packed weight; then the scales and zero points
    interleaved. Input, copy, scales and int32 data live to the end."""
    p = -(-lin.rows // INT4_ROWS) * INT4_ROWS * (-(-lin.cols // INT4_COLS) * INT4_COLS)
    scales = p // INT4_GROUP * e
    end = 13 + len(kept.state) - 1
    held_ = ((lin.rows * lin.cols * e, end), (p * e, end), (scales, end), (scales, end))
    chain = ((p * e, 5), (p * e, 6), (p * e, 7), (p * e, 8), (p * 4, end))
    pack = ((p * 2, 10), (p * 2, 11), (p // 2, 12), *((nbytes, KEPT) for nbytes in kept.packed))
    return (*held_, *chain, *pack, *((nbytes, KEPT) for nbytes in kept.state))


def named_tensors(model: ModelInfo | Trace, elem_bytes: int) -> tuple[tuple[str, int], ...]:
    from vramtui.predict.tracing.traces import Trace

    if isinstance(model, Trace):
        return model.named_tensors()
    return _record_tensors(model, elem_bytes)


@lru_cache(maxsize=64)
def _record_tensors(model: ModelInfo, elem_bytes: int) -> tuple[tuple[str, int], ...]:
    """An OPT record's checkpoint tensors (sorted as the loader walks them: once a model)."""
    return tuple((name, numel * elem_bytes) for name, numel in model.checkpoint_tensors())


def opt_linears(model: ModelInfo) -> tuple[LinearWeight, ...]:
    """OPT's linear layers: every one is converted but the lm_head, tied to the token
    embedding (transformers' skip list)."""
    h, f, p = model.hidden, model.ffn, model.word_embed_proj_dim
    base = "model.decoder."
    shapes = [("self_attn." + name, h, h) for name in ("k_proj", "v_proj", "q_proj", "out_proj")]
    shapes += [("fc1", f, h), ("fc2", h, f)]
    out = [
        LinearWeight(f"{base}layers.{i}.{name}", rows, cols, True, True)
        for i in range(model.layers)
        for name, rows, cols in shapes
    ]
    if p != h:
        out += [LinearWeight(base + "project_out", p, h, True, True)]
        out += [LinearWeight(base + "project_in", h, p, True, True)]
    return (*out, LinearWeight("lm_head", model.vocab, p, False, False))


def linears(model: ModelInfo | Trace) -> tuple[LinearWeight, ...]:
    """The model's linear layers; a UsageError where a trace does not list them (one
    made from a config's numbers alone)."""
    from vramtui.predict.tracing.traces import Trace

    if not isinstance(model, Trace):
        return opt_linears(model)
    if not model.linears:
        raise UsageError(
            f"cannot predict quantized weights for {model.name}: its linear layers are not "
            "known without a trace of its code",
            field="quant",
        )
    return model.linears


def quant_plan(
    model: ModelInfo | Trace, method: str, double_quant: bool, elem_bytes: int
) -> QuantPlan:
    """The weights of `model` under `method`, kept by what they are made of: a model's
    traces for other batches and prompts share them, so a search plans them once."""
    named = named_tensors(model, elem_bytes)
    return _plan(named, linears(model), method, double_quant, elem_bytes)


@lru_cache(maxsize=32)
def _plan(
    named: tuple[tuple[str, int], ...],
    found: tuple[LinearWeight, ...],
    method: str,
    double_quant: bool,
    elem_bytes: int,
) -> QuantPlan:
    weights = quantize_tensors(method, double_quant, named, found, elem_bytes)
    by_weight = {lin.weight_name: lin for lin in weights.converted}
    items: list[LoadItem] = []
    warm = 0.0
    for name, size in named:
        lin = by_weight.get(name)
        if lin is None:
            items.append(LoadItem(((size, KEPT),)))
            warm += size
            continue
        items.append(LoadItem(convert_ops(method, lin, elem_bytes, double_quant)))
        warm += lin.rows * lin.cols * WARMUP_ELEMENT[method]
    return QuantPlan(weights, elem_bytes, tuple(items), int(warm // 2) * 2)
