"""The run's shape as the step model reads it: the architecture, the arguments
checked, the positions the cache holds, the step model (with its quantized
weights and cache) for a run."""

from __future__ import annotations

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES, ModelInfo
from vramtui.predict.calibration import Calibration
from vramtui.predict.quant_kv import QuantizedKv
from vramtui.predict.quantized import QuantPlan, quant_plan
from vramtui.predict.steps import StepModel
from vramtui.predict.traced_steps import TracedSteps
from vramtui.predict.tracing.traces import Trace

# What the estimator reads a model from: OPT's hand-written record (exact), or a trace
# of any architecture's own code (predict/tracing/).
Architecture = ModelInfo | Trace

BACKENDS = ("cuda", "mps", "cpu")
ATTN = ("sdpa", "eager")


def sample_tokens(tokens: int, points: int) -> list[int]:
    """Up to `points` evenly spread token indices in 0..tokens-1, ends included."""
    if tokens <= 0 or points <= 0:
        return []
    if tokens <= points or points == 1:
        return list(range(tokens)) if tokens <= points else [tokens - 1]
    step = (tokens - 1) / (points - 1)
    return sorted({round(i * step) for i in range(points)})


def held_positions(prompt: int, tokens: int, token: int, cache: str) -> int:
    """Positions the cache holds after step `token`: a dynamic cache the prompt and the
    tokens so far; a static one every position of the run, from the prefill on."""
    return prompt + (tokens if cache == "static" else token)


def kv_bytes(model: Architecture, dtype: str, batch: int, positions: int) -> int:
    """The cache's tensor bytes holding `positions` positions (sliding layers capped)."""
    if isinstance(model, Trace):
        return model.kv_bytes(positions)
    return model.kv_bytes_per_token(dtype, batch) * positions


def quantized_kv_bytes(
    model: Architecture, dtype: str, batch: int, prompt: int, positions: int, bits: int
) -> int:
    """The quantized cache's tensor bytes holding `positions` positions (quant_kv.py)."""
    rule = QuantizedKv(bits, DTYPE_BYTES[dtype])
    if isinstance(model, Trace):
        rows = [layer.row for layer in model.layers]
    else:
        rows = [batch * model.hidden * DTYPE_BYTES[dtype]] * model.layers
    return sum(rule.layer_bytes(row, prompt, positions - prompt) for row in rows)


def plans(
    model: Architecture, dtype: str, quant: str, double_quant: bool, cache_bits: int
) -> tuple[QuantPlan | None, QuantizedKv | None]:
    """The quantized weights (None: --quant none) and cache (None: not quantized)."""
    elem = DTYPE_BYTES[dtype]
    weights = quant_plan(model, quant, double_quant, elem) if quant != "none" else None
    return weights, QuantizedKv(cache_bits, elem) if cache_bits else None


def step_model(
    model: Architecture,
    prompt_tokens: int,
    batch: int,
    dtype: str,
    attn: str,
    backend: str,
    calibration: Calibration,
    cache: str = "dynamic",
    tokens: int = 0,
    quant: str = "none",
    double_quant: bool = False,
    cache_bits: int = 0,
) -> StepModel:
    # generate sizes a static cache for the prompt and every new token
    static = prompt_tokens + tokens if cache == "static" else 0
    weights, kv = plans(model, dtype, quant, double_quant, cache_bits)
    if not isinstance(model, Trace):
        return StepModel(
            model, prompt_tokens, batch, dtype, attn, backend, calibration, static, weights, kv
        )
    asked = (prompt_tokens, batch, dtype, attn, "cuda" if backend == "cuda" else "cpu")
    traced = (model.prompt, model.batch, model.dtype, model.attn, model.backend)
    if asked != traced:
        raise ValueError(f"{model.name} was traced for {traced}, not {asked}")
    return TracedSteps(model, calibration, static, weights, kv)


def check_args(
    model: Architecture,
    prompt_tokens: int,
    tokens: int,
    batch: int,
    dtype: str,
    attn: str,
    backend: str,
) -> None:
    if dtype not in DTYPE_BYTES:
        choose = ", ".join(DTYPE_BYTES)
        raise UsageError(f"unknown dtype {dtype!r}; choose from {choose}", field="dtype")
    if attn not in ATTN:
        raise UsageError(f"unknown attention {attn!r}; choose from {', '.join(ATTN)}", field="attn")
    if backend not in BACKENDS:
        choose = ", ".join(BACKENDS)
        raise UsageError(f"unknown backend {backend!r}; choose from {choose}", field="device")
    for name, value in (("prompt_tokens", prompt_tokens), ("tokens", tokens), ("batch", batch)):
        if value <= 0:
            raise UsageError(f"{name.replace('_', ' ')} must be positive, got {value}", field=name)
    if prompt_tokens + tokens > model.positions:
        raise UsageError(
            f"prompt ({prompt_tokens}) + new tokens ({tokens}) exceeds {model.name}'s "
            f"limit of {model.positions} positions",
            field="tokens",
        )
