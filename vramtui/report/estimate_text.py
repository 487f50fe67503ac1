"""How a prediction reads: the estimate's table rows, its warnings, fit lines.

Shared by `vramtui estimate` and the app's start screen. The predict layer
returns facts; the sentences are here.
"""

from __future__ import annotations

from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Estimate, held_positions
from vramtui.predict.fit_forecast import FitCheck
from vramtui.runspec.cap import format_cap
from vramtui.runspec.quant import METHODS, quant_label
from vramtui.units import format_bytes, format_count


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def fragmentation_warning(est: Estimate) -> str | None:
    """One line where the allocator's cache will balloon, else None."""
    if not est.cache_balloons:
        return None
    return (
        f"reserved grows to ~{_gb(est.peak_reserved_bytes)} (KV cache segments too small to "
        f"reuse; capped by the GPU, freed before an OOM; the run needs "
        f"{_gb(est.required_bytes)}): PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True avoids it"
    )


def compiled_step_note(est: Estimate) -> str | None:
    """One line where transformers compiles the decode step (a static cache on CUDA):
    which compile the figures are for, and the other's. None otherwise."""
    if est.compile is None:
        return None
    other = "cached" if est.compile == "first" else "first"
    alt = est.varied(compile=other)
    figures = (
        f"peak allocated {format_bytes(alt.peak_allocated_bytes, 2)}, "
        f"peak total {format_bytes(alt.peak_total_bytes, 2)}"
    )
    if est.compile == "first":
        return (
            "the decode step is compiled (static cache, CUDA graphs): figures for this "
            "shape's first compile, when inductor's autotuner allocates its "
            f"{format_bytes(est.first_compile_bytes)} L2 flush buffer; once inductor's "
            f"cache holds the shape: {figures}"
        )
    return (
        "the decode step is compiled (static cache, CUDA graphs): figures with inductor's "
        f"cache holding the shape; a first compile: {figures}"
    )


def _cpu_rows(e: Estimate) -> list[tuple[str, str, str]]:
    """On the CPU the figure is the process's RSS: the tensors plus Python itself."""
    process, tensors = cpu_process(), e.peak_allocated_bytes
    return [
        ("tensors (peak)", format_bytes(tensors, 2), "weights, KV cache, transient"),
        ("Python process", format_bytes(process.bytes, 2), f"with {process.source}"),
        ("peak RSS", format_bytes(tensors + process.bytes, 2), "the engine's figure on the CPU"),
    ]


def estimate_rows(e: Estimate) -> list[tuple[str, str, str]]:
    """(component, bytes, what) for the estimate table."""
    kv_token = e.model.kv_bytes_per_token(e.dtype, e.batch)
    positions = held_positions(e.prompt_tokens, e.tokens, e.tokens - 1, e.cache)
    up_to = " (at most the GPU's free memory)" if e.cache_balloons else ""
    cuda = e.backend == "cuda"
    kv_what = f"{format_bytes(kv_token)}/token x {positions} positions"
    if e.cache_bits:
        kv_what = f"{e.cache_bits}-bit (QuantizedCache, quanto), {positions} positions"
    rows = [
        *weights_rows(e),
        ("KV cache (end)", format_bytes(e.kv_cache_bytes, 2), kv_what),
        ("transient (largest step)", format_bytes(e.transient_bytes, 2), _transient_what(e)),
    ]
    if e.backend == "cpu":
        return rows + _cpu_rows(e)
    rows += [
        ("allocator slack", format_bytes(e.slack_bytes, 2), "reserved - allocated"),
        *_compiled_rows(e),
        (
            "CUDA context & libraries",
            format_bytes(e.context_bytes, 2),
            "not from the allocator" if cuda else "none off CUDA",
        ),
        ("peak allocated", format_bytes(e.peak_allocated_bytes, 2), "torch max_memory_allocated"),
    ]
    if cuda:
        rows += [
            (
                "peak reserved",
                format_bytes(e.peak_reserved_bytes, 2),
                "max_memory_reserved" + up_to,
            ),
            ("peak total", format_bytes(e.peak_total_bytes, 2), "NVML per-process" + up_to),
        ]
    if e.cache_balloons:
        rows.append(
            ("needed to fit", format_bytes(e.required_bytes, 2), "the cached KV segments freed")
        )
    elif e.required_bytes > e.peak_total_bytes:
        why = "if the autotuner's flush buffer takes two segments"
        rows.append(("needed to fit", format_bytes(e.required_bytes, 2), why))
    return rows


def _transient_what(e: Estimate) -> str:
    if e.first_compile_bytes:
        return "the decode step and the L2 flush buffer"
    what = "prefill activations, logits, cache copy"
    if e.quant != "none":
        what += ", the dequantized weight"
    if e.cache_bits:
        what += ", one layer's K and V dequantized"
    return what


def quant_text(e: Estimate) -> str:
    """How the weights are stored, in a few words: 'nf4+dq (bitsandbytes 4-bit ...)'."""
    if e.quant == "none":
        return f"weights in {e.dtype}"
    return f"{quant_label(e.quant, e.double_quant)} ({METHODS[e.quant].about})"


def weights_rows(e: Estimate) -> list[tuple[str, str, str]]:
    """The weights' row, and with --quant their split: packed, state, full precision."""
    per_param = f"{e.weights_bytes_per_param:.3f} bytes/param"
    params = f"{format_count(e.model.params)} params, {per_param}"
    rows = [("weights", format_bytes(e.weights_bytes, 2), params)]
    if e.quant == "none":
        return rows
    label = quant_label(e.quant, e.double_quant)
    return rows + [
        ("  packed", format_bytes(e.weights_packed_bytes, 2), f"the {label} weights"),
        ("  quantization state", format_bytes(e.weights_state_bytes, 2),
         "absmax / scales / zero points / codes"),
        ("  full precision", format_bytes(e.weights_full_bytes, 2),
         f"in {e.dtype}: embeddings, lm_head, norms, what the quantizer skips"),
    ]  # fmt: skip


def _compiled_rows(e: Estimate) -> list[tuple[str, str, str]]:
    """The compiled decode step's private pool, where there is one."""
    if not e.graph_pool_bytes:
        return []
    what = "compiled decode step: cuBLAS workspace, step buffers"
    if e.first_compile_bytes:
        what += ", L2 flush (first compile)"
    return [("CUDA graph pool", format_bytes(e.graph_pool_bytes, 2), what + "; in reserved")]


def fit_text(check: FitCheck, where: str = "free") -> str:
    """'fits: needs 3.1 GB of 79.2 GB free (76.1 GB to spare)', or why it won't."""
    need, free = format_bytes(check.need_bytes), format_bytes(check.free_bytes)
    if check.fits:
        return f"fits: needs {need} of {free} {where} ({format_bytes(check.spare_bytes)} to spare)"
    short = f"needs {need}, {free} {where}"
    if check.most_tokens:
        return f"won't fit: {short}; at most {check.most_tokens} new tokens fit"
    if not check.weights_fit:
        return f"won't fit: {short}; not even the weights fit"
    return f"won't fit: {short}; not even one new token fits"


def cap_fit_text(check: FitCheck, context_bytes: int) -> str:
    """A prediction under --cap: the allocator's peak reserved held against the cap."""
    cap = format_cap(check.free_bytes)
    need = format_bytes(check.need_bytes, 2)
    outside = f"; the CUDA context, {format_bytes(context_bytes, 2)}, is outside the cap"
    if check.fits:
        spare = format_bytes(check.spare_bytes, 2)
        return f"under --cap {cap}: fits: peak reserved {need} ({spare} to spare){outside}"
    head = f"under --cap {cap}: won't fit: peak reserved {need}"
    if check.most_tokens:
        return f"{head}; at most {check.most_tokens} new tokens fit{outside}"
    if not check.weights_fit:
        return f"{head}; not even the weights fit{outside}"
    return f"{head}; not even one new token fits{outside}"


def tokens_fit_text(most: int, memory: str, positions_bound: bool, positions: int) -> str:
    """The 'max new tokens that fit' line, saying when the model's positions, not
    memory, are the limit."""
    line = f"max new tokens that fit in {memory}: {most}"
    if positions_bound:
        line += f" (the model's {positions} positions are the limit, not memory)"
    return line
