"""`vramtui fit`'s words: the header saying what was assumed of the card, one table row
per model and precision, the JSON rows, and --check's one line."""

from __future__ import annotations

from typing import Any

from vramtui.models.cards import Target
from vramtui.predict.fit_search import Budget, FitRow
from vramtui.predict.planner import Setting
from vramtui.predict.quant_storage import CHECKED_ON_CPU
from vramtui.report.tables import table
from vramtui.runspec.quant import method, quant_label
from vramtui.units import format_bytes

HEADER = (
    "model", "quant", "fits", "peak", "headroom", "max context", "max batch", "binds",
    "suggested", "basis",
)  # fmt: skip
BASIS_NOTE = {
    "exact": "exact: OPT's own record",
    "traced": "traced: the model's code, traced before (cached)",
    "interpolated": "interpolated: training traces at nearby sizes (the search's guess; "
    "near the line it is traced where tracing is allowed)",
    "approximate": "approximate: the config's numbers (`vramtui estimate -m MODEL` traces "
    "the model's code once; a training step: `vramtui fit --trace` or `estimate --trace`)",
}


def header_lines(target: Target, budget: Budget, margin: str, setting: Setting) -> list[str]:
    s = setting
    return [
        f"Plan for: {target.label}",
        f"  memory a process sees  {format_bytes(target.total_bytes, 2)} ({target.total_source})",
        f"  CUDA context           {format_bytes(budget.context_bytes, 2)} "
        f"({target.context_source})",
        f"  margin                 {format_bytes(budget.margin_bytes, 2)} ({margin})",
        f"  usable by the allocator {format_bytes(budget.usable_bytes, 2)} "
        "(memory - context - margin)",
        setting_line(s),
    ]


def setting_line(s: Setting) -> str:
    if s.workload != "generate":  # fine-tuning: the context is the sequence trained on
        return (
            f"Setting: {s.workload}, sequences of {s.context} tokens (the context), "
            f"micro-batch {s.batch} (the batch), {s.dtype}, {s.attn}"
        )
    return (
        f"Setting: {s.workload}, prompt {s.prompt_tokens} + {s.tokens} new tokens "
        f"(context {s.context}), batch {s.batch}, {s.dtype}, {s.attn}; a longer context "
        f"lengthens the {'prompt' if s.grow == 'prompt' else 'new tokens'}"
    )


def base_quant(s: Setting) -> tuple[str, bool]:
    """How the weights are stored: qlora's base in nf4 with double quant (its recipe),
    else the setting's --quant."""
    if s.workload == "qlora":
        return "nf4", True
    return s.quant, s.double_quant


def suggested(row: FitRow) -> str:
    """The setting the row suggests: what to change so that it fits, or how far it goes."""
    s = row.setting
    if row.fits:
        if row.max_batch > s.batch:
            return f"batch up to {row.max_batch}"
        return "as asked"
    if row.binding in ("weights", "loading") or (row.max_context == 0 and row.max_batch == 0):
        return "does not load: a larger card or fewer bits"
    if row.max_context > s.held:
        return f"context {row.max_context}"
    return f"batch {row.max_batch}"


def _figure(value: int, row: FitRow) -> str:
    mark = "" if row.peak.replayed else "~"
    return mark + format_bytes(value, 2)


def _count(value: int) -> str:
    return "–" if value == 0 else str(value)


def text_row(row: FitRow) -> list[str]:
    s = row.setting
    return [
        row.model,
        quant_label(*base_quant(s)),
        "yes" if row.fits else "no",
        _figure(row.peak_total_bytes, row),
        _figure(row.headroom_bytes, row),
        _count(row.max_context),
        _count(row.max_batch),
        row.binding,
        suggested(row),
        row.peak.basis,
    ]


def report(rows: list[FitRow], lines: list[str]) -> str:
    bases = sorted({r.peak.basis for r in rows})
    notes = [f"basis: {BASIS_NOTE[b]}" for b in bases]
    if any(r.peak.basis == "interpolated" for r in rows):
        notes.append(
            "~ (interpolated): a training step interpolated from traced sizes, not traced "
            "at this one (--model traces the sizes near the line)"
        )
    if any(not r.peak.replayed and r.peak.basis != "interpolated" for r in rows):
        notes.append(
            "~: the allocator's fragmentation model far from the line (the answer is the "
            "same), or near it the cache's segments replayed in strides, within 2 MiB a "
            "cached tensor of the replay step by step (--model replays every step)"
        )
    notes += quant_notes(rows)
    notes.append(
        "peak: the process's (allocator + CUDA context); headroom: left after the margin; "
        "max context at the asked batch, max batch at the asked context"
    )
    return "\n".join([*lines, "", table([text_row(r) for r in rows], HEADER), "", *notes])


def quant_notes(rows: list[FitRow]) -> list[str]:
    """What the quantized rows rest on, and the methods that need a CUDA GPU."""
    asked = list(dict.fromkeys(r.setting.quant for r in rows if r.setting.quant != "none"))
    if not asked:
        return []
    notes = [
        "quantized: weights as the quantizer stores them (packed, quantization state, "
        "the modules it skips kept in the dtype); the load's and the forward's "
        "quantization copies modelled from the libraries' code"
    ]
    for name in asked:
        chosen = method(name)
        if chosen.cuda_only:
            checked = (
                "" if name in CHECKED_ON_CPU else "; its storage rule read from torchao's source"
            )
            notes.append(f"{name}: CUDA GPUs only ({chosen.about}){checked}")
    return notes


def json_row(row: FitRow, target: Target) -> dict[str, Any]:
    s = row.setting
    return {
        "model": row.model,
        "family": row.family,
        "quant": base_quant(s)[0],
        "double_quant": base_quant(s)[1],
        "workload": s.workload,
        "fits": row.fits,
        "max_context": row.max_context,
        "max_batch": row.max_batch,
        "peak_total_bytes": row.peak_total_bytes,
        "headroom_bytes": row.headroom_bytes,
        "binding": row.binding,
        "suggested": suggested(row),
        "need_bytes": row.peak.need_bytes,
        "weights_bytes": row.peak.weights_bytes,
        "weights_split": dict(row.peak.weights_split),
        "load_peak_bytes": row.peak.load_peak_bytes,
        "kv_cache_bytes": row.peak.kv_cache_bytes,
        "activation_bytes": row.peak.activation_bytes,
        "slack_bytes": row.peak.slack_bytes,
        "basis": row.peak.basis,
        "replayed": row.peak.replayed,
        "prompt_tokens": s.prompt_tokens,
        "tokens": s.tokens,
        "context": s.context,
        "batch": s.batch,
        "dtype": s.dtype,
        "attn": s.attn,
        "grow": s.grow,
        "positions": row.positions,
        "usable_bytes": row.usable_bytes,
        "card": target.label,
        "card_total_bytes": target.total_bytes,
        "card_total_source": target.total_source,
        "context_overhead_bytes": target.context_bytes,
        "context_overhead_source": target.context_source,
    }


def check_line(row: FitRow) -> str:
    """--check's one line: fits with how much to spare, or short by how much."""
    s = row.setting
    what = (
        f"{row.model} ({quant_label(*base_quant(s))}, {s.workload}, "
        f"context {s.context}, batch {s.batch})"
    )
    if row.fits:
        return f"fits: {what} with {format_bytes(row.headroom_bytes, 2)} to spare after the margin"
    binds = row.binding
    if binds == "weights" and row.peak.weights_split:
        parts = ", ".join(f"{format_bytes(n, 2)} {part}" for part, n in row.peak.weights_split)
        binds = f"weights: {parts}"
    return (
        f"does not fit: {what} is short by {format_bytes(-row.headroom_bytes, 2)} "
        f"({binds} binds; {suggested(row)})"
    )
