"""What a sweep's results look like: the CSV (one row per cell), the stdout table and
the markdown. Pure formatting over `vramtui.sweep.grid.CellResult`s."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from typing import Any

from vramtui.measure.environment import Environment
from vramtui.measure.startup import FORKED, FORKED_SPARE
from vramtui.report.export import safe_cell
from vramtui.runspec.quant import quant_label
from vramtui.sweep.grid import Axes
from vramtui.sweep.results import CellResult, max_present
from vramtui.units import format_bytes

# ---- CSV -----------------------------------------------------------------------------

SPEC_COLUMNS = (
    "cell",
    "repeat",
    "model",
    "source",
    "path",
    "tokens",
    "prompt_tokens",
    "batch",
    "dtype",
    "attn",
    "cache",
    "device",
    "seed",
    "quant",  # --quant's method (the label, with +dq, is quant_label)
)
STATUS_COLUMNS = ("status", "failure_kind", "failure_phase", "failure_token", "failure_message")
FIGURE_COLUMNS = (
    "engine_pid",
    "params",
    "weights_bytes",
    "quant_label",
    "weights_packed_bytes",  # quantized weights as stored
    "weights_state_bytes",  # their quantization state (absmax, SCB, scales, ...)
    "weights_full_bytes",  # parameters and buffers kept in full precision
    "bytes_per_param_weights",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
    "peak_nvml_process_bytes",
    "peak_nvml_device_used_bytes",
    "bytes_per_param",
    "bytes_per_param_basis",
    "tokens_generated",
    "tokens_per_s",
    "decode_tokens_per_s",
    "load_s",
    "generate_s",
    "kv_cache_bytes_final",
    "oom_requested_bytes",
    "oom_held_bytes",
    "memory_source",
    "nvml_process_source",
    "compiled",  # a static cache's compiled step: first (inductor compiled) | cached
)
ENVIRONMENT_COLUMNS = (
    "device_name",
    "device_total_bytes",
    "driver",
    "cuda_runtime",
    "torch",
    "transformers",
    "python",
    "vramtui",
    "platform",
    "sdpa_cudnn",  # CUDA: whether sdpa could use cuDNN attention
    "cuda_alloc_conf",  # PYTORCH_CUDA_ALLOC_CONF the engine ran with (reserved depends on it)
    "engine_start",  # cold | warm spare | forked (from the sweep's fork server)
)
CSV_COLUMNS = SPEC_COLUMNS + STATUS_COLUMNS + FIGURE_COLUMNS + ENVIRONMENT_COLUMNS


def device_name(env: Environment) -> str | None:
    return env.gpu_name or env.device_name


def csv_row(result: CellResult) -> dict[str, Any]:
    spec, env = result.spec, result.environment
    row: dict[str, Any] = {
        "cell": result.cell.index,
        "repeat": result.cell.repeat,
        "model": spec.model,
        "source": spec.source,
        "path": spec.path,
        "tokens": spec.tokens,
        "prompt_tokens": spec.prompt_tokens,
        "batch": spec.batch,
        "dtype": result.dtype or spec.dtype or "auto",
        "attn": spec.attn,
        "cache": spec.cache,
        "device": env.device or spec.device,
        "seed": spec.seed,
        "quant": spec.quant,
        "status": result.status,
        "failure_kind": result.failure_kind,
        "failure_phase": result.failure_phase,
        "failure_token": result.failure_token,
        "failure_message": result.failure_message,
    }
    for name in FIGURE_COLUMNS:
        row[name] = (
            getattr(env, name)
            if name in ("memory_source", "nvml_process_source")
            else getattr(result, name)
        )
    for name in ENVIRONMENT_COLUMNS:
        row[name] = device_name(env) if name == "device_name" else getattr(env, name)
    return row


def csv_text(results: Sequence[CellResult]) -> str:
    """One row per cell: spec, status, every figure, environment."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        row = csv_row(result)
        writer.writerow([safe_cell(row[name]) for name in CSV_COLUMNS])
    return out.getvalue()


# ---- tables --------------------------------------------------------------------------

FIGURE_HEADERS = (
    "weights",
    "peak allocated",
    "peak reserved",
    "peak NVML process",
    "bytes/param",
    "tok/s",
)
AXIS_HEADERS = {"prompt_tokens": "prompt", "batch": "batch", "dtype": "dtype", "quant": "quant"}


def _bytes(value: int | None) -> str:
    return format_bytes(value, 2)


def _at_least(value: int | None) -> str:
    return f"≥ {_bytes(value)}" if value is not None else "–"


def figure_cells(results: Sequence[CellResult]) -> list[str]:
    """The figure columns for one configuration: its repeats (or a single cell)."""
    done = [r for r in results if r.status == "completed"]
    if done:
        rates = sorted(r.tokens_per_s for r in done if r.tokens_per_s is not None)
        rate = "–"
        if rates:
            rate = f"{statistics.median(rates):.1f}"
            if len(rates) > 1:
                rate += f" ({rates[0]:.1f}–{rates[-1]:.1f})"
        bpp = _max_float(r.bytes_per_param for r in done)
        return [
            _bytes(max_present(*(r.weights_bytes for r in done))),
            _bytes(max_present(*(r.peak_allocated_bytes for r in done))),
            _bytes(max_present(*(r.peak_reserved_bytes for r in done))),
            _bytes(max_present(*(r.peak_nvml_process_bytes for r in done))),
            f"{bpp:.2f}" if bpp is not None else "–",
            rate,
        ]
    ooms = [r for r in results if r.oom]
    if ooms:
        weights = max_present(*(r.weights_bytes for r in ooms))
        return [
            _bytes(weights) if weights is not None else "–",
            f"OOM ({_at_least(max_present(*(r.peak_allocated_bytes for r in ooms)))})",
            _at_least(max_present(*(r.peak_reserved_bytes for r in ooms))),
            _at_least(max_present(*(r.peak_nvml_process_bytes for r in ooms))),
            "–",
            "–",
        ]
    first = results[0]
    label = first.status if first.status != "failed" else f"failed ({first.failure_kind})"
    weights = first.weights_bytes
    return [_bytes(weights) if weights is not None else "–", label, "–", "–", "–", "–"]


def _max_float(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def axis_value(result: CellResult, axis: str) -> str:
    if axis == "dtype":
        return result.dtype or result.spec.dtype or "auto"
    if axis == "quant":
        return quant_label(result.spec.quant, result.spec.double_quant)
    return str(getattr(result.spec, axis))


def table_rows(
    results: Sequence[CellResult], varying: Sequence[str], *, group_repeats: bool
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, rows): one row per cell, or per configuration with its repeats merged."""
    repeats = max((r.cell.repeat for r in results), default=1) > 1
    header = ["model", "tokens", "attn", *(AXIS_HEADERS[a] for a in varying)]
    if repeats:
        header.append("runs" if group_repeats else "repeat")
    header.extend(FIGURE_HEADERS)
    groups: dict[Any, list[CellResult]] = {}
    for result in _by_configuration(results):
        key = result.cell.key if group_repeats else result.cell.index
        groups.setdefault(key, []).append(result)
    rows = []
    for members in groups.values():
        first = members[0]
        row = [first.spec.model, str(first.spec.tokens), first.spec.attn]
        row += [axis_value(first, a) for a in varying]
        if repeats and group_repeats:
            row.append(f"{sum(r.status == 'completed' for r in members)}/{len(members)}")
        elif repeats:
            row.append(str(first.cell.repeat))
        rows.append(tuple(row + figure_cells(members)))
    return tuple(header), rows


def _by_configuration(results: Sequence[CellResult]) -> list[CellResult]:
    """Results in grid order, each configuration's repeats together."""
    first: dict[Any, int] = {}
    for r in results:
        first.setdefault(r.cell.key, r.cell.index)
    return sorted(results, key=lambda r: (first[r.cell.key], r.cell.repeat))


def failure_notes(results: Sequence[CellResult], varying: Sequence[str] = ()) -> list[str]:
    """One line for each cell that did not complete: where, and the engine's words."""
    axes = list(varying) + (["attn"] if len({r.spec.attn for r in results}) > 1 else [])
    notes = []
    for r in _by_configuration(results):
        if r.status == "completed":
            continue
        where = f"token {r.failure_token}" if r.failure_token is not None else r.failure_phase
        what = "out of memory" if r.oom else r.status
        cell = [r.spec.model, f"{r.spec.tokens} tokens"]
        cell += [f"{AXIS_HEADERS.get(a, a)} {axis_value(r, a)}" for a in axes]
        cell += [f"repeat {r.cell.repeat}"] if r.cell.repeat > 1 else []
        message = f": {r.failure_message}" if r.failure_message else ""
        at = f" at {where}" if where and r.status != "skipped" else ""
        notes.append(f"cell {r.cell.index} ({', '.join(cell)}): {what}{at}{message}")
    return notes


def environment_line(results: Sequence[CellResult]) -> str:
    env = next((r.environment for r in results if r.environment.device_name), Environment())
    parts = [device_name(env) or "device unknown"]
    versions = (("driver", env.driver), ("CUDA", env.cuda_runtime), ("torch", env.torch))
    for label, version in (*versions, ("transformers", env.transformers), ("vramtui", env.vramtui)):
        if version:
            parts.append(f"{label} {version}")
    return " · ".join(parts)


def constants_line(results: Sequence[CellResult], varying: Sequence[str]) -> str:
    """The axes that do not vary, and where the allocator figures come from."""
    first = results[0]
    parts = []
    if "prompt_tokens" not in varying:
        parts.append(f"prompt {first.spec.prompt_tokens} tokens")
    if "batch" not in varying:
        parts.append(f"batch {first.spec.batch}")
    if "dtype" not in varying:
        parts.append(axis_value(first, "dtype"))
    if "quant" not in varying and first.spec.quant != "none":
        parts.append(f"weights {axis_value(first, 'quant')}")
    env = first.environment
    if env.device:
        parts.append(f"device {env.device}")
    if env.memory_source:
        parts.append(f"allocator figures from {env.memory_source}")
    if env.cuda_alloc_conf:
        parts.append(f"PYTORCH_CUDA_ALLOC_CONF={env.cuda_alloc_conf}")
    return ", ".join(parts)


FORKED_NOTE_CUDA = (
    "Forked engines (--fork): peak reserved and NVML can differ from a spawned engine's "
    "by an allocator segment (the same allocations at other addresses)."
)
FORKED_NOTE_CPU = (
    "Forked engines (--fork): process RSS comes out lower than a spawned engine's "
    "(pages shared with the fork server count differently)."
)


def _forked(result: CellResult) -> bool:
    return result.environment.engine_start in (FORKED, FORKED_SPARE)


def method_notes(results: Sequence[CellResult], grouped: bool) -> list[str]:
    """What the columns measure, in the words of the backend the cells ran on."""
    sources = sorted({r.environment.memory_source for r in results if r.environment.memory_source})
    notes = ["Each cell ran in a fresh engine process."]
    if "torch.cuda" in sources:
        notes.append(
            "Peak allocated: torch's caching allocator, high-water mark (transients "
            "inside a step included); peak reserved: the most it held from the driver."
        )
    notes += [f"Peak allocated: {s}, high-water mark." for s in sources if s != "torch.cuda"]
    if any(r.peak_nvml_process_bytes for r in results):
        notes.append(
            "Peak NVML process: the engine process's device memory as NVML reports "
            "it, CUDA context included."
        )
    if any(_forked(r) for r in results):
        notes.append(FORKED_NOTE_CUDA if "torch.cuda" in sources else FORKED_NOTE_CPU)
    bases = {r.bytes_per_param_basis for r in results if r.bytes_per_param_basis}
    if bases:
        names = {"peak_nvml_process": "peak NVML process", "peak_allocated": "peak allocated"}
        notes.append(
            "bytes/param: " + " or ".join(sorted(names[b] for b in bases)) + " ÷ parameters."
        )
    if grouped and max((r.cell.repeat for r in results), default=1) > 1:
        notes.append(
            "runs: completed repeats of that configuration; memory columns show the "
            "largest over them, tok/s the median (min–max)."
        )
    return notes


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_text(results: Sequence[CellResult], axes: Axes) -> str:
    """The results so far as markdown, ready to paste into a README."""
    if not results:
        return ""
    varying = axes.varying()
    header, rows = table_rows(results, varying, group_repeats=True)
    lines = [
        f"**{_md_cell(environment_line(results))}** — {_md_cell(constants_line(results, varying))}",
        "",
        f"`{axes.command()}`",
        "",
        "| " + " | ".join(header) + " |",
        "| "
        + " | ".join(
            "---" if i < len(header) - len(FIGURE_HEADERS) else "---:" for i in range(len(header))
        )
        + " |",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    lines.append("")
    lines += [_md_cell(note) for note in method_notes(results, grouped=True)]
    notes = failure_notes(results, varying)
    if notes:
        lines.append("")
        lines += [f"- {_md_cell(note)}" for note in notes]
    return "\n".join(lines) + "\n"
