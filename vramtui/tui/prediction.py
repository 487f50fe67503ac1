"""The estimator's view in the app: the start screen's prediction and fit check,
the live breakdown's rows and the OOM forecast's line. Pure, no Textual."""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.analysis.breakdown import Breakdown
from vramtui.measure.events import Loaded
from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Estimate, estimate_run
from vramtui.predict.fit_forecast import FitCheck, OomForecast, cap_check, fit_check, ram_fit
from vramtui.predict.placed import estimate_placed, format_gib
from vramtui.report.estimate_text import cap_fit_text, fit_text, fragmentation_warning
from vramtui.report.summary_text import layer_span
from vramtui.runspec import DeviceList, ResolvedRun
from vramtui.runspec.device_map import devices_max_memory
from vramtui.tui.screen_text import short_bytes
from vramtui.units import format_bytes

# Stacked breakdown colours, bottom of the stack first.
COMPONENT_COLORS = {
    "weights": (90, 150, 250),
    "weights full": (90, 150, 250),
    "weights packed": (60, 110, 220),
    "quant state": (140, 190, 255),
    "KV cache": (80, 200, 120),
    "other allocated": (150, 150, 160),
    "transient": (240, 170, 60),
    "allocator slack": (120, 110, 210),
    "context & other": (230, 90, 200),
    # a training run's parts (tui/train_view.py), transient, slack and context as above
    "frozen weights": (90, 150, 250),
    "trainable weights": (60, 200, 220),
    "optimizer states": (200, 120, 240),
    "gradients": (240, 110, 90),
    "activations saved": (80, 200, 120),
}
COMPONENT_MARKERS = {
    "weights": "W",
    "weights full": "W",
    "weights packed": "P",
    "quant state": "q",
    "KV cache": "K",
    "other allocated": "o",
    "transient": "t",
    "allocator slack": "s",
    "context & other": "c",
    "frozen weights": "W",
    "trainable weights": "T",
    "optimizer states": "O",
    "gradients": "G",
    "activations saved": "A",
}


@dataclass(frozen=True)
class StartPrediction:
    text: str
    fits: bool | None  # None: the device's free memory is not known
    ram: FitCheck | None = None  # a CPU run's peak RSS against the RAM available


def _cpu_prediction(est: Estimate, run: ResolvedRun) -> StartPrediction:
    process = est.peak_allocated_bytes + cpu_process().bytes
    head = (
        f"predicted RSS {format_bytes(process, 2)} (tensors "
        f"{format_bytes(est.peak_allocated_bytes, 2)} + process)"
    )
    check = ram_fit(run, est)
    if check is None:
        return StartPrediction(head, None)
    return StartPrediction(f"{head}\n{fit_text(check, 'RAM available')}", check.fits, check)


def start_prediction(est: Estimate | None, run: ResolvedRun) -> StartPrediction:
    """'predicted peak …' and, where the device's free memory is known, whether it fits."""
    if est is None:
        why = f" ({run.model_note})" if run.model_note else ""
        return StartPrediction(f"no prediction for this model{why}", None)
    if est.backend == "cpu":
        return _cpu_prediction(est, run)
    # The need, as NVML will see the process (a ballooning cache: the warning says more).
    head = (
        f"predicted peak {format_bytes(est.required_bytes, 2)} · "
        f"allocated {format_bytes(est.peak_allocated_bytes, 2)} · "
        f"KV {format_bytes(est.kv_cache_bytes)}"
    )
    lines, fits = [head], None
    choice = run.device_choice
    if est.backend == "cuda" and choice is not None and choice.total and choice.free is not None:
        check = fit_check(est, choice.free)
        fits = check.fits
        lines.append(fit_text(check))
    if est.backend == "cuda" and run.spec.cap_bytes is not None:
        capped = cap_check(est, run.spec.cap_bytes)  # peak reserved against the cap
        fits = capped.fits and fits is not False
        lines.append(cap_fit_text(capped, est.context_bytes))
    warning = fragmentation_warning(est)
    if warning:  # after the fit line, which must stay in view at 80x24
        lines.append(warning)
    return StartPrediction("\n".join(lines), fits)


def form_prediction(run: ResolvedRun, devices: DeviceList) -> StartPrediction:
    """The start screen's prediction of `run`: on one device, start_prediction's; placed
    by a device map, each device's predicted peak against what it is given
    (predict/placed.py, transformers' own placement), which runs out first, and a
    --max-memory that leaves room for generation. Lines fit the start screen's column."""
    est = estimate_run(run)
    if est is None or run.spec.device_map is None:
        return start_prediction(est, run)
    max_memory = devices_max_memory(run.max_memory, devices)
    placed = estimate_placed(est, dict(run.config or {}), run.spec.device_map, max_memory)
    lines = []  # no heading: four lines stay in view at 80x24
    for d in placed.devices:
        span = layer_span(d.layers)
        held = f"L{span}" if span != "–" else "–"
        given = f" of {short_bytes(d.max_memory_bytes)}" if d.max_memory_bytes else ""
        mark = {True: "ok", False: "NO", None: ""}[d.fits]
        lines.append(f"{d.device:<7}{held:<7}{short_bytes(d.peak_total_bytes)}{given} {mark}")
    first = placed.runs_out_first
    where = f"{run.spec.device_map} device map"
    if first is None:
        lines.append(f"{where}: every device has room")
    else:
        lines.append(f"{where}: {first.device} runs out first")
        if placed.room is not None:
            lines.append(f"room: --max-memory {format_gib(placed.room)}")
    return StartPrediction("\n".join(lines), first is None)


def predicted_curve(est: Estimate, points: int) -> list[tuple[int, int]]:
    """(token, predicted figure) as the run screen draws it beside the measured series:
    each step's peak allocated, and on the CPU, whose figure is the process's RSS, that
    plus the Python process (the start screen's "predicted RSS")."""
    process = cpu_process().bytes if est.backend == "cpu" else 0
    return [(token, peak + process) for token, peak in est.curve(points)]


def breakdown_rows(breakdown: Breakdown, cpu: bool = False) -> list[tuple[str, int]]:
    """(label, bytes) of the components present, bottom of the stack first (quantized
    weights as their parts)."""
    rows = []
    for label, value in breakdown.components(split_weights=True):
        if value is None:
            continue
        if cpu and label == "other allocated":
            label = "rest of process"
        rows.append((label, value))
    return rows


def stored_as(loaded: Loaded | None) -> str:
    """How the weights and the KV cache are stored, where not in the dtype, for the
    breakdown's title: " · weights nf4 · KV quanto int4"."""
    if loaded is None:
        return ""
    parts = [f"weights {loaded.quant}"] if loaded.quant != "none" else []
    if loaded.kv_storage:
        parts.append("KV " + loaded.kv_storage.split(",")[0])
    return "".join(f" · {part}" for part in parts)


def forecast_text(
    forecast: OomForecast | None, requested: int, tokens_done: int = 0
) -> tuple[str, bool]:
    """One short line about running out of memory, and whether it is a warning; nothing
    until there are decode steps to fit the growth on."""
    if forecast is None:
        if tokens_done >= 3:  # enough steps: what is missing is the device's size
            return "no OOM forecast: device size unknown", False
        return "", False
    growth = f"+{short_bytes(round(forecast.bytes_per_token))}/token"
    if forecast.token is None:
        return f"no OOM before the last position\n({growth})", False
    if forecast.fits:
        return f"fits; OOM would come at token {forecast.token}\n({growth})", False
    return f"OOM expected at token {forecast.token} of {requested}\n({growth})", True
