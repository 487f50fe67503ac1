"""Quantized weights and KV cache: the names a user types, and what loads each.

Pure Python (nothing imported): the engine hands each method to transformers' own
quantizer (`BitsAndBytesConfig`, `TorchAoConfig`); the estimator reads the storage
rule each one follows. A method whose library is not installed is refused before
anything runs, in one line naming the extra that installs it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from vramtui.errors import UsageError

EXTRA = "quant"  # pip install -e ".[quant]"


@dataclass(frozen=True)
class QuantMethod:
    """One --quant choice: the library that quantizes, the bits a weight is stored in,
    and, for the user, what it is."""

    name: str
    backend: str  # "bitsandbytes" | "torchao" | "" (none)
    package: str  # the module that must import ("" for none)
    bits: int  # bits a quantized weight is stored in
    about: str
    cuda_only: bool = False  # refused off CUDA (no kernels there)


METHODS: dict[str, QuantMethod] = {
    m.name: m
    for m in (
        QuantMethod("none", "", "", 16, "weights in --dtype"),
        QuantMethod("int8", "bitsandbytes", "bitsandbytes", 8, "bitsandbytes LLM.int8"),
        QuantMethod("nf4", "bitsandbytes", "bitsandbytes", 4, "bitsandbytes 4-bit NormalFloat"),
        QuantMethod("fp4", "bitsandbytes", "bitsandbytes", 4, "bitsandbytes 4-bit float"),
        QuantMethod("int8-wo", "torchao", "torchao", 8, "torchao int8 weight-only"),
        QuantMethod(
            "int4-wo", "torchao", "torchao", 4, "torchao int4 weight-only, group size 128",
            cuda_only=True,
        ),
        QuantMethod(
            "fp8", "torchao", "torchao", 8, "torchao float8 weight-only (GPUs with float8)",
            cuda_only=True,
        ),
    )
}  # fmt: skip
QUANTS = tuple(METHODS)
# Bits of transformers' QuantizedCache (cache_config nbits)
CACHE_BITS = (2, 4)
CACHE_PACKAGE = "optimum.quanto"  # the QuantizedCache backend the engine asks for


def method(name: str) -> QuantMethod:
    try:
        return METHODS[name]
    except KeyError:
        choose = ", ".join(QUANTS)
        raise UsageError(f"unknown --quant {name!r}; choose from {choose}", field="quant") from None


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is not installed
        return False


def check_quant(name: str, double_quant: bool = False) -> QuantMethod:
    """The method, or one line saying why it cannot run here (unknown, not installed,
    --double-quant on a method without it)."""
    chosen = method(name)
    if chosen.package and not installed(chosen.package):
        raise UsageError(
            f'--quant {name} needs {chosen.package}: pip install -e ".[{EXTRA}]"', field="quant"
        )
    if double_quant and chosen.name not in ("nf4", "fp4"):
        raise UsageError(
            f"--double-quant applies to bitsandbytes 4-bit (nf4, fp4), not --quant {name}",
            field="quant",
        )
    return chosen


def check_cache_backend(cache: str) -> None:
    """Refuse --cache quantized where its backend (optimum-quanto) is not installed."""
    if cache == "quantized" and not installed(CACHE_PACKAGE):
        raise UsageError(
            f'--cache quantized needs optimum-quanto: pip install -e ".[{EXTRA}]"', field="cache"
        )


def check_quant_device(name: str, device_type: str) -> None:
    """Refuse a method whose kernels do not run on this kind of device."""
    chosen = method(name)
    if chosen.cuda_only and device_type != "cuda":
        raise UsageError(
            f"--quant {name} runs on CUDA GPUs only ({chosen.about}); this run is on {device_type}",
            field="quant",
        )


def quant_label(name: str, double_quant: bool = False) -> str:
    """How a run's quantization is said in one word: none, int8, nf4+dq, ..."""
    return f"{name}+dq" if double_quant and name in ("nf4", "fp4") else name
