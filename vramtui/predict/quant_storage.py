"""Quantized weights: which modules each --quant method converts, and the tensors
each converted weight is stored as.

Pure arithmetic (no torch, no bitsandbytes, no torchao): a laptop without the
libraries can plan a quantized run. The rules are read from the code that
quantizes (transformers' quantizers, bitsandbytes' Params4bit/Int8Params,
torchao's Int8Tensor/Int4Tensor/Float8Tensor) and checked, to the byte, against
real quantized modules on the CPU where the library runs there (tests/test_quant_storage.py).

Which modules are converted (transformers `get_keys_to_not_convert` and
`_keep_in_fp32_modules`, applied in tracing/inventory.py on the model itself):
bitsandbytes replaces every module whose type is exactly `nn.Linear` (or GPT-2's
`Conv1D`), torchao every `nn.Linear` weight; both skip the output embedding
(lm_head), both sides of a tied weight, the module of the model's last parameter
and the modules the class keeps in float32. Embeddings, norms, routers that are
not `nn.Linear` and mixture-of-experts weights held as 3-D parameters are never
converted: they stay in the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32 = 4
BNB_BLOCK = 64  # bitsandbytes 4-bit: one absmax per 64 weights
NESTED_BLOCK = 256  # double quant: one float32 absmax per 256 first-level absmax
NF4_CODE = 16  # the 4-bit code (quant_map): 16 float32 values, per module
NESTED_CODE = 256  # the 8-bit code of the nested absmax: 256 float32 values
INT4_GROUP = 128  # torchao int4 weight-only: one scale and zero point per 128 weights
INT4_ROWS, INT4_COLS = 8, 1024  # tinygemm's padding of the weight (ntile 8, k multiple)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LinearWeight:
    """One linear layer's weight as the quantizers see it."""

    name: str  # the module's name: model.layers.0.self_attn.q_proj
    rows: int  # out_features
    cols: int  # in_features
    bnb: bool  # bitsandbytes converts it (an exact nn.Linear or Conv1D, not skipped)
    torchao: bool  # torchao converts it (an nn.Linear, not skipped)

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"


@dataclass(frozen=True)
class Stored:
    """The tensors one converted weight is stored as: the packed weight, and its
    quantization state (scales, absmax, zero points, codes), bytes each."""

    packed: tuple[int, ...]
    state: tuple[int, ...]

    @property
    def tensors(self) -> tuple[int, ...]:
        return (*self.packed, *self.state)

    @property
    def total(self) -> int:
        return sum(self.tensors)


def stored(method: str, rows: int, cols: int, elem_bytes: int, double_quant: bool) -> Stored:
    """The tensors `method` stores a rows x cols weight as (`elem_bytes`: the model's
    dtype, for the methods whose scales are in it)."""
    n = rows * cols
    if method == "int8":
        # Int8Params: CB (int8, the weight's shape, the parameter's own storage) and
        # SCB, one float32 absmax per output row
        return Stored((n,), (rows * FLOAT32,))
    if method in ("nf4", "fp4"):
        blocks = _ceil(n, BNB_BLOCK)
        packed = (_ceil(n, 2),)  # two 4-bit values a byte, shape ((n + 1) // 2, 1)
        if not double_quant:
            return Stored(packed, (blocks * FLOAT32, NF4_CODE * FLOAT32))
        # absmax quantized to uint8 around its mean (offset, a float32 scalar), with
        # its own float32 absmax per 256 and its 8-bit code
        nested = (_ceil(blocks, NESTED_BLOCK) * FLOAT32, NESTED_CODE * FLOAT32)
        return Stored(packed, (blocks, NF4_CODE * FLOAT32, FLOAT32, *nested))
    if method == "int8-wo":
        # Int8Tensor, per row: qdata int8, scale float32 and zero_point int8 (rows, 1)
        return Stored((n,), (rows * FLOAT32, rows))
    if method == "int4-wo":
        # Int4TilePackedTo4dTensor (the tinygemm layout the engine asks for): the
        # weight padded to rows a multiple of 8, columns of 1024, packed two a byte
        # (int32 tiles); scales and zero points interleaved, (cols / 128, rows, 2) in
        # the model's dtype
        rows_pad, cols_pad = _ceil(rows, INT4_ROWS) * INT4_ROWS, _ceil(cols, INT4_COLS) * INT4_COLS
        groups = cols_pad // INT4_GROUP * rows_pad
        return Stored((rows_pad * cols_pad // 2,), (2 * groups * elem_bytes,))
    if method == "fp8":
        # Float8Tensor, per row: qdata float8_e4m3fn, scale float32 (rows, 1)
        return Stored((n,), (rows * FLOAT32,))
    raise ValueError(f"no storage rule for --quant {method}")


# Methods whose rule was checked against real modules on the CPU; the others were
# read from torchao's source (their kernels need CUDA).
CHECKED_ON_CPU = ("int8", "nf4", "fp4", "int8-wo", "fp8")
BACKEND = {"int8": "bnb", "nf4": "bnb", "fp4": "bnb", "int8-wo": "torchao", "int4-wo": "torchao",
           "fp8": "torchao"}  # fmt: skip


def converts(method: str, linear: LinearWeight) -> bool:
    """Whether `method`'s quantizer converts this linear layer."""
    if method == "none":
        return False
    return linear.bnb if BACKEND[method] == "bnb" else linear.torchao


@dataclass(frozen=True)
class QuantWeights:
    """A model's weights under one method, split as the breakdown shows them."""

    method: str
    double_quant: bool
    packed_bytes: int  # the converted weights' packed data
    state_bytes: int  # absmax / scales / zero points / codes
    full_bytes: int  # everything kept in the model's dtype (embeddings, lm_head, norms, ...)
    tensors: tuple[int, ...]  # every tensor's bytes, in the loader's order
    converted: tuple[LinearWeight, ...]  # the layers the quantizer converted
    kept: tuple[LinearWeight, ...]  # linear layers it skipped

    @property
    def total_bytes(self) -> int:
        return self.packed_bytes + self.state_bytes + self.full_bytes

    def bytes_per_param(self, params: int) -> float:
        return self.total_bytes / params if params else 0.0


def quantize_tensors(
    method: str,
    double_quant: bool,
    named: tuple[tuple[str, int], ...],
    linears: tuple[LinearWeight, ...],
    elem_bytes: int,
) -> QuantWeights:
    """The checkpoint's tensors (`named`: name, bytes, in the loader's order) with every
    weight `method` converts replaced by the tensors it is stored as."""
    by_weight = {lin.weight_name: lin for lin in linears if converts(method, lin)}
    packed = state = full = 0
    out: list[int] = []
    for name, size in named:
        lin = by_weight.get(name)
        if lin is None:
            full += size
            out.append(size)
            continue
        kept = stored(method, lin.rows, lin.cols, elem_bytes, double_quant)
        packed += sum(kept.packed)
        state += sum(kept.state)
        out.extend(kept.tensors)
    converted = tuple(by_weight.values())
    kept_linears = tuple(lin for lin in linears if lin.weight_name not in by_weight)
    return QuantWeights(
        method, double_quant, packed, state, full, tuple(out), converted, kept_linears
    )
