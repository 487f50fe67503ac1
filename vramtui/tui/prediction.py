"""The estimator's view in the app: the start screen's prediction and fit check,
the predicted curve, the live breakdown and OOM forecast. Pure, no Textual."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from vramtui.breakdown import Breakdown
from vramtui.catalogue import ModelInfo, lookup
from vramtui.devices import DeviceChoice
from vramtui.errors import UsageError
from vramtui.estimator import (
    ALLOC_CONF,
    Estimate,
    estimate,
    expandable_segments,
    fragmentation_warning,
    model_info_for_config,
)
from vramtui.forecast import OomForecast, start_screen_fit
from vramtui.spec import RunSpec, load_config_source, resolve_dtype
from vramtui.tui.text import short_bytes
from vramtui.units import format_bytes

# Stacked breakdown colours, bottom of the stack first.
COMPONENT_COLORS = {
    "weights": (90, 150, 250),
    "KV cache": (80, 200, 120),
    "other allocated": (150, 150, 160),
    "transient": (240, 170, 60),
    "allocator slack": (120, 110, 210),
    "context & other": (230, 90, 200),
}
COMPONENT_MARKERS = {
    "weights": "W",
    "KV cache": "K",
    "other allocated": "o",
    "transient": "t",
    "allocator slack": "s",
    "context & other": "c",
}


def backend_for(device: str, devices: Iterable[DeviceChoice]) -> str:
    """cuda, mps or cpu: what `device` (auto included) will run on, as far as NVML knows."""
    ids = [d.id for d in devices]
    if device == "auto":
        device = next((i for i in ids if i.startswith("cuda")), "mps" if "mps" in ids else "cpu")
    if device.startswith("cuda"):
        return "cuda"
    return "mps" if device == "mps" else "cpu"


def model_for(spec: RunSpec) -> ModelInfo | None:
    """The architecture a spec runs, where the estimator knows it (catalogue, OPT configs)."""
    if spec.source == "architecture":
        return lookup(spec.model)
    config = load_config_source(spec)
    return model_info_for_config(config) if config else None


def spec_estimate(spec: RunSpec, backend: str) -> Estimate | None:
    """The estimate of a run before it starts; None where the model cannot be estimated."""
    try:
        info = model_for(spec)
        if info is None:
            return None
        return estimate(
            info,
            prompt_tokens=spec.prompt_tokens,
            tokens=spec.tokens,
            batch=spec.batch,
            dtype=resolve_dtype(spec.dtype, backend),
            attn=spec.attn,
            backend=backend,
            expandable_segments=expandable_segments(os.environ.get(ALLOC_CONF)),
        )
    except UsageError:
        return None


@dataclass(frozen=True)
class StartPrediction:
    text: str
    fits: bool | None  # None: the device's free memory is not known


def start_prediction(est: Estimate | None, device: DeviceChoice | None) -> StartPrediction:
    """'predicted peak …' and, on a GPU whose free memory NVML told, whether it fits."""
    if est is None:
        return StartPrediction("no prediction for this model (not an OPT architecture)", None)
    if est.backend == "cpu":
        return StartPrediction(
            f"predicted tensors {format_bytes(est.peak_allocated_bytes, 2)} at the peak; "
            "the CPU figure (process RSS) adds the Python process",
            None,
        )
    process = (
        f"process; its cache grows to ~{format_bytes(est.peak_total_bytes, 2)}"
        if est.cache_balloons
        else "process"
    )
    head = (
        f"predicted peak {format_bytes(est.required_bytes, 2)} ({process}) · "
        f"allocated {format_bytes(est.peak_allocated_bytes, 2)} · "
        f"KV {format_bytes(est.kv_cache_bytes)}"
    )
    lines, fits = [head], None
    if device is not None and device.total and device.free is not None:
        fits, line = start_screen_fit(est, device.total, device.total - device.free)
        lines.append(line)
    warning = fragmentation_warning(est)
    if warning:  # after the fit line, which must stay in view at 80x24
        lines.append(warning)
    return StartPrediction("\n".join(lines), fits)


def breakdown_rows(breakdown: Breakdown, cpu: bool = False) -> list[tuple[str, int]]:
    """(label, bytes) of the components present, bottom of the stack first."""
    rows = []
    for label, value in breakdown.components():
        if value is None:
            continue
        if cpu and label == "other allocated":
            label = "rest of process"
        rows.append((label, value))
    return rows


def forecast_text(
    forecast: OomForecast | None, requested: int, tokens_done: int = 0
) -> tuple[str, bool]:
    """One short line about running out of memory, and whether it is a warning."""
    if forecast is None:
        if tokens_done >= 3:  # enough steps: what is missing is the device's size
            return "no OOM forecast: device size unknown", False
        return "OOM forecast: after 2 decode steps", False
    growth = f"+{short_bytes(round(forecast.bytes_per_token))}/token"
    if forecast.token is None:
        return f"no OOM before the last position\n({growth})", False
    if forecast.fits:
        return f"fits; OOM would come at token {forecast.token}\n({growth})", False
    return f"OOM expected at token {forecast.token} of {requested}\n({growth})", True
