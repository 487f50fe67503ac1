"""Human-readable views of a session's summary, shared by the CLI and the app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vramtui.measure.environment import Environment
from vramtui.measure.session_view import Peak
from vramtui.measure.startup import FORKED, FORKED_SPARE, WARM
from vramtui.measure.summary_record import SavedDevice, StartupTimes, Summary
from vramtui.report.allocations_text import allocations_text
from vramtui.report.generations import GENERATION_HEADER, generation_rows
from vramtui.report.tables import table
from vramtui.report.train_text import training_text
from vramtui.runspec.cap import format_cap
from vramtui.units import format_bytes, format_count

if TYPE_CHECKING:
    from vramtui.analysis.breakdown import ComparisonRow
    from vramtui.predict.placed import DeviceEstimate

SERIES_LABELS = {
    "nvml_process": "NVML process",
    "reserved": "allocator reserved",
    "allocated": "allocator allocated",
    "step_peak": "per-step peak",
    "nvml_device_used": "NVML device used",
}


# What the engine's series measure where there is no CUDA allocator.
_BACKEND_LABELS = {
    "cpu": {"allocated": "process RSS", "step_peak": "per-step peak RSS"},
    "mps": {"allocated": "MPS allocated", "reserved": "MPS driver"},
}


def series_labels(backend: str | None) -> dict[str, str]:
    """SERIES_LABELS, named for what they measure on `backend` (cuda, mps, cpu)."""
    labels = dict(SERIES_LABELS)
    labels.update(_BACKEND_LABELS.get(backend or "", {}))
    return labels


def device_note(environment: Environment) -> str | None:
    """One line saying what the figures are where there is no GPU (None on CUDA)."""
    backend = environment.backend
    source = environment.memory_source or "the process"
    if backend == "cpu" and environment.placed_device:  # one device of several
        return f"CPU's share of a placed model — figures are the engine's {source}"
    if backend == "cpu":
        return f"CPU — figures are {source}; no GPU"
    if backend == "mps":
        return f"Apple MPS — figures are {source}; no NVML"
    return None


def at_text(peak: Peak) -> str:
    where = f"token {peak.token}" if peak.token is not None else "—"
    return f"{where} ({peak.phase})"


def peak_rows(summary: Summary, labels: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(series, peak, where) for every series that has a peak."""
    rows = []
    for name, label in (labels or SERIES_LABELS).items():
        peak = summary.peaks.get(name)
        if peak:
            rows.append((label, format_bytes(peak.value, 2), at_text(peak)))
    return rows


def fact_rows(summary: Summary) -> list[tuple[str, str]]:
    env = summary.environment
    rate = summary.tokens_per_s
    where = ", ".join(str(x) for x in (env.device, summary.dtype) if x)
    rows = [
        ("status", summary.status),
        ("model", f"{summary.model} ({where})" if where else str(summary.model)),
        ("tokens", _tokens(summary)),
        ("tok/s", f"{rate:.1f}" if rate else "–"),
        ("weights", format_bytes(summary.weights_bytes, 2)),
        *quant_rows(summary),
        ("KV cache at end", format_bytes(summary.kv_cache_bytes_final, 2)),
    ]
    if summary.training is not None:  # tokens trained on are in the training part
        rows = [r for r in rows if r[0] not in ("tokens", "tok/s", "KV cache at end")]
    if summary.kv_cache_storage:
        rows.append(("KV cache stored", summary.kv_cache_storage))
    # the weights' and reserved's bytes/param tell a quantized run apart; a run in its
    # dtype has its weights' in the dtype's size
    per_param = (
        ("weights", summary.bytes_per_param_weights if summary.quant != "none" else None),
        ("peak allocated", summary.bytes_per_param_peak_allocated),
        (
            "peak reserved",
            summary.bytes_per_param_peak_reserved if summary.quant != "none" else None,
        ),
        ("peak process", summary.bytes_per_param_peak_process),
    )
    rows += [
        (f"bytes/param ({name})", f"{value:.2f}") for name, value in per_param if value is not None
    ]
    device = env.gpu_name or env.device_name
    named = (("driver", env.driver), ("torch", env.torch), ("transformers", env.transformers))
    versions = ", ".join(f"{k} {v}" for k, v in (*named, ("vramtui", env.vramtui)) if v)
    rows.append(("device", f"{device} · {versions}" if device else versions))
    cap = cap_line(summary)
    if cap:
        rows.append(("cap", cap))
    startup = startup_line(summary.startup)
    if startup:
        rows.append(("start-up", startup))
    failure = summary.failure
    if failure:
        where = f"token {failure.token}" if failure.token is not None else failure.phase
        if summary.training is not None and failure.token is not None:
            where = f"{failure.phase} of step {failure.token}"
        rows.append(("reason", f"{failure.kind} at {where}: {failure.message}"))
    return rows


def quant_rows(summary: Summary) -> list[tuple[str, str]]:
    """A quantized model: its quantization, and its weights as stored (packed, their
    quantization state, and what stays in full precision, by kind)."""
    split = summary.weights_split
    if summary.quant == "none" and (split is None or not split.quantized_params):
        return []
    rows = [("quantization", summary.quant)]
    if split is not None:
        kept = ", ".join(f"{kind} {format_bytes(n, 2)}" for kind, n in split.kept.items() if n)
        rows.append(
            (
                "weights as stored",
                f"{format_count(split.quantized_params)} of {format_count(split.params)} "
                f"params quantized: packed {format_bytes(split.packed_bytes, 2)} · quant "
                f"state {format_bytes(split.state_bytes, 2)} · kept in full precision "
                f"{format_bytes(split.full_bytes, 2)}" + (f" ({kept})" if kept else ""),
            )
        )
    return rows


def cap_line(summary: Summary) -> str | None:
    """A --cap run: the cap, the fraction the engine set, and what the cap does not hold."""
    if not summary.cap_bytes:
        return None
    fraction, total = summary.cap_fraction, summary.environment.device_total_bytes
    of = f"; fraction {fraction} of {format_bytes(total, 2)}" if fraction and total else ""
    return (
        f"{format_cap(summary.cap_bytes)}, torch's caching allocator only{of} — the CUDA "
        "context is not under the cap (NVML's process figure includes it)"
    )


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "–"


def startup_line(up: StartupTimes | None) -> str | None:
    """One line for the summary: time to the first token from Run, and where it went."""
    if up is None or up.first_token_s is None:
        return None
    done = up.imports_done_s
    imported_ahead = up.engine in (WARM, FORKED, FORKED_SPARE)  # a spare, or forked
    if imported_ahead and (done is None or done <= 0):
        before = "imports done before Run"
    elif imported_ahead:  # Run came while the spare (or the server) was still importing
        before = f"still importing at Run, done {_seconds(done)} after"
    else:
        before = f"imports {_seconds(up.imports_s)}"
    stages = f"{before}, device {_seconds(up.device_init_s)}, build {_seconds(up.build_s)}"
    return (
        f"first token {_seconds(up.first_token_s)} after Run ({up.engine or 'engine'}: "
        f"{stages}, first step {_seconds(up.first_step_s)})"
    )


def _tokens(summary: Summary) -> str:
    """generated/requested; a profiled program requests no number, so generated alone."""
    requested = summary.tokens_requested
    generated = summary.tokens_generated
    return f"{generated}/{requested}" if requested is not None else str(generated)


def comparison_rows(rows: list[ComparisonRow]) -> list[tuple[str, str, str, str]]:
    """(component, predicted, measured, error) for the components that were measured."""
    out = []
    for row in rows:
        if row.measured is None:
            continue
        error = f"{row.error_percent:+.1f} %" if row.error_percent is not None else "–"
        out.append(
            (row.component, format_bytes(row.predicted, 2), format_bytes(row.measured, 2), error)
        )
    return out


def layer_span(layers: list[int] | tuple[int, ...]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2,5-6'; '–' for none."""
    runs: list[list[int]] = []
    for i in sorted(layers):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs) or "–"


DEVICE_HEADER = ("device", "layers", "weights", "peak", "predicted", "NVML peak", "predicted")
DEVICE_NOTE = (
    "peak: each GPU's allocator peak, the CPU's RSS (its offloaded weights and the "
    "process); NVML peak: the engine's process on that GPU; predicted: for the placement "
    "the run made, with its error"
)


def _against(predicted: int | None, measured: int | None) -> str:
    """'12.52 GB (+3.2 %)': a prediction and its error against the measurement."""
    if predicted is None:
        return "–"
    text = format_bytes(predicted, 2)
    if measured:
        text += f" ({(predicted - measured) / measured * 100:+.1f} %)"
    return text


def device_rows(
    devices: Sequence[SavedDevice], predicted: dict[str, DeviceEstimate] | None = None
) -> list[tuple[str, ...]]:
    """One row per device of a placed run's summary `devices`: what it holds, its measured
    peaks and, where predicted (analysis/placed_comparison.py), the prediction and its
    error. The CPU's RSS is held against its predicted total (weights and the process)."""
    rows: list[tuple[str, ...]] = []
    for d in devices:
        name = d.device
        guess = (predicted or {}).get(name)
        peak, nvml = d.peak_allocated_bytes, d.peak_nvml_process_bytes
        gpu = name.startswith("cuda")
        alloc_guess = total_guess = None
        if guess is not None:
            alloc_guess = guess.peak_allocated_bytes if gpu else guess.peak_total_bytes
            total_guess = guess.peak_total_bytes if gpu else None
        rows.append(
            (
                name,
                layer_span(d.layers),
                format_bytes(d.weights_bytes, 2),
                format_bytes(peak, 2),
                _against(alloc_guess, peak),
                format_bytes(nvml, 2) if gpu else "–",
                _against(total_guess, nvml),
            )
        )
    return rows


def summary_text(summary: Summary, predicted: dict[str, DeviceEstimate] | None = None) -> str:
    """The peak summary; a placed run's devices each with `predicted`, where given."""
    head = f"Peak memory — {summary.model}, {summary.tokens_generated} tokens"
    if summary.training is not None:
        done, asked = summary.training.steps_done, summary.training.steps_requested
        head = f"Peak memory — {summary.model}, training, {done}/{asked} steps"
    env = summary.environment
    rows = peak_rows(summary, series_labels(env.backend))
    parts = [head, "", table(rows, ("series", "peak", "at")), ""]
    note = device_note(env)
    if note:
        parts += [note, ""]
    parts.append(table([(k, v) for k, v in fact_rows(summary)]))
    if summary.training is not None:
        parts += ["", training_text(summary.training)]
    if summary.generations:  # a profiled program's generate() calls
        calls = generation_rows(summary.generations)
        parts += ["", "generate() calls", table(calls, GENERATION_HEADER)]
    snapshot = allocations_text(
        summary.allocation_snapshot
    )  # --snapshot: what held the bytes at the peak
    if snapshot:
        parts += ["", snapshot]
    if summary.devices:  # a model placed across devices
        devices = device_rows(summary.devices, predicted)
        parts += ["", "each device", table(devices, DEVICE_HEADER), DEVICE_NOTE]
    for notice in summary.notices:
        parts.append(f"note: {notice}")
    return "\n".join(parts)
