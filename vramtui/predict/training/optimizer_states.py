"""The optimizer's states on the device, by type, in closed form. Pure arithmetic.

Read from the optimizers' own code (and checked against real optimizers after one
step on the CPU, tests/test_train_optimizer_states.py):
- torch.optim.AdamW: `exp_avg` and `exp_avg_sq`, each like the parameter (its dtype);
  `step` is a float32 scalar on the CPU unless capturable or fused: no device bytes.
- torch.optim.SGD with its defaults (momentum 0): no state.
- transformers' Adafactor with its defaults (beta1 None): a parameter of two or more
  dimensions keeps float32 row and column second moments (shape[:-1] and shape[:-2] +
  shape[-1:]), any other a float32 second moment like itself; `step` and `RMS` are
  Python numbers.
- bitsandbytes' AdamW8bit: a parameter of fewer than `min_8bit_size` (4096) elements
  keeps two float32 states like itself; any other two uint8 states like itself and a
  float32 absmax per block of 256 elements for each, plus the two 256-entry float32
  quantization maps once, shared by every parameter.
- PagedAdamW8bit: the same tensors, but every state buffer of a parameter with at least
  100,000 elements comes from CUDA unified memory (cudaMallocManaged): outside torch's
  allocator (not in allocated or reserved), on the device while it fits there
  (counted in the process's device memory, NVML), paged out to the host under pressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

FLOAT32 = 4
MIN_8BIT_SIZE = 4096  # bitsandbytes: fewer elements keep 32-bit states
BLOCK_8BIT = 256  # bitsandbytes' blockwise 8-bit states: one absmax per 256 elements
QMAP_BYTES = 256 * FLOAT32  # each of the two quantization maps (dynamic, udynamic)
PAGED_MIN = 100_000  # bitsandbytes pages a state buffer from this many elements
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "uint8": 1, "int8": 1}


@dataclass(frozen=True)
class Param:
    """One parameter of the model to train."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    four_bit: bool = False  # a packed 4-bit base weight (QLoRA)

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class OptimizerStates:
    """The states' tensors, bytes each, in the order the first step makes them."""

    tensors: tuple[int, ...]  # from torch's caching allocator
    paged: tuple[int, ...] = ()  # from unified memory (paged optimizers)

    @property
    def device_bytes(self) -> int:
        return sum(self.tensors)

    @property
    def paged_bytes(self) -> int:
        return sum(self.paged)


def _adafactor(param: Param) -> list[int]:
    shape = param.shape
    if len(shape) >= 2:
        return [prod(shape[:-1]) * FLOAT32, prod((*shape[:-2], shape[-1])) * FLOAT32]
    return [param.numel * FLOAT32]


def _eight_bit(param: Param) -> list[int]:
    n = param.numel
    if n < MIN_8BIT_SIZE:
        return [n * FLOAT32, n * FLOAT32]
    blocks = -(-n // BLOCK_8BIT)
    return [n, n, blocks * FLOAT32, blocks * FLOAT32]


def optimizer_states(optim: str, params: list[Param]) -> OptimizerStates:
    """The device memory `optim`'s states take for the trainable `params`."""
    trained = [p for p in params if p.trainable]
    if optim == "sgd":
        return OptimizerStates(())
    if optim == "adamw":
        return OptimizerStates(tuple(p.nbytes for p in trained for _ in range(2)))
    if optim == "adafactor":
        return OptimizerStates(tuple(size for p in trained for size in _adafactor(p)))
    if optim in ("adamw-8bit", "paged-adamw-8bit"):
        paging = optim == "paged-adamw-8bit"
        tensors: list[int] = []
        paged: list[int] = []
        if any(p.numel >= MIN_8BIT_SIZE for p in trained):
            tensors += [QMAP_BYTES, QMAP_BYTES]
        for p in trained:
            sizes = _eight_bit(p)
            buffers, absmax = sizes[:2], sizes[2:]
            (paged if paging and p.numel >= PAGED_MIN else tensors).extend(buffers)
            tensors.extend(absmax)
        return OptimizerStates(tuple(tensors), tuple(paged))
    raise ValueError(f"no state rule for --optim {optim}")


def step_transient(optim: str, params: list[Param]) -> int:
    """The most an untraced optimizer's step holds above its states, at once (torch's
    AdamW and SGD are traced instead). bitsandbytes' 8-bit update runs in place: 0.
    Adafactor updates one parameter at a time; for the largest it holds float32
    temporaries of its size (two for a float32 parameter: the squared gradient and the
    update; four for a 16-bit one: with float32 copies of the gradient and the
    parameter), for a matrix row and column factors the size of its states, and a
    float32 scalar (a root mean square: a device tensor)."""
    if optim != "adafactor":
        return 0
    trained = [p for p in params if p.trainable]

    def held(p: Param) -> int:
        copies = 2 if p.dtype == "float32" else 4
        factors = sum(_adafactor(p)) if len(p.shape) >= 2 else 0
        return p.numel * FLOAT32 * copies + factors + FLOAT32

    return max((held(p) for p in trained), default=0)
