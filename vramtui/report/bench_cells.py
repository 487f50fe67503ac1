"""The cells of a `vramtui bench` CSV read back as sessions that hold only their peaks,
so `vramtui compare` can set them side by side with each other and with sessions."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.measure.session import Peak, SessionView
from vramtui.measure.summary_format import loaded_event, peaks_view
from vramtui.report.bench_table import (
    CSV_COLUMNS,
    ENVIRONMENT_COLUMNS,
    SPEC_COLUMNS,
)
from vramtui.report.saved import read_text, whole_cell
from vramtui.runspec.program_spec import saved_spec

# bench CSV column -> the session's peak it holds
_PEAKS = {
    "allocated": "peak_allocated_bytes",
    "reserved": "peak_reserved_bytes",
    "nvml_process": "peak_nvml_process_bytes",
    "nvml_device_used": "peak_nvml_device_used_bytes",
}
_INTS = ("tokens", "prompt_tokens", "batch", "seed", "weights_bytes", "params")


def is_bench_csv(path: Path) -> bool:
    """Whether a file starts with a bench CSV's header (this one's, or an older one's
    with fewer columns: a column missing reads as empty)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return header[:3] == list(CSV_COLUMNS[:3]) and "peak_allocated_bytes" in header


def _backend(device: str) -> str:
    return device.split(":")[0] if device else "cuda"


def cell_view(row: dict[str, str], where: str) -> SessionView:
    """A bench row as a session that holds only its peaks: its spec, environment,
    weights and how it ended."""
    spec: dict[str, Any] = {k: row[k] or None for k in SPEC_COLUMNS if k not in ("cell", "repeat")}
    for key in _INTS:
        if key in spec:
            spec[key] = whole_cell(row, key, where)
    environment = {k: row[k] for k in ENVIRONMENT_COLUMNS if row[k]}
    environment.update(backend=_backend(row["device"]), device=row["device"])
    environment["memory_source"] = row["memory_source"]
    peaks = {}
    for name, column in _PEAKS.items():
        value = whole_cell(row, column, where)
        if value is not None:
            peaks[name] = Peak(value, None, "", 0.0)
    failure = None
    if row["failure_kind"]:
        kind, message, phase = (row[f"failure_{k}"] for k in ("kind", "message", "phase"))
        failure = ev.Failed(kind, message, phase, whole_cell(row, "failure_token", where))
    weights = whole_cell(row, "weights_bytes", where)
    loaded = None
    if weights is not None:
        params, prompt = (whole_cell(row, k, where) or 0 for k in ("params", "prompt_tokens"))
        loaded = loaded_event(
            weights, params=params, dtype=row["dtype"], prompt_tokens=prompt,
            quant=row["quant_label"] or "none",
        )  # fmt: skip
    return peaks_view(
        saved_spec(spec), Environment.from_dict(environment), row["status"], peaks,
        loaded=loaded, failure=failure,
    )  # fmt: skip


def bench_views(path: Path) -> list[SessionView]:
    """Every measured cell of a bench CSV (skipped cells measured nothing), in order."""
    rows = list(csv.DictReader(read_text(path).splitlines()))
    views = []
    for n, cells in enumerate(rows, start=2):
        if None in cells or None in cells.values():
            raise UsageError(f"{path}, line {n}: the cells do not match the bench header")
        row = {column: cells.get(column, "") for column in CSV_COLUMNS}
        if row["status"] != "skipped":
            views.append(cell_view(row, f"{path}, line {n}"))
    if not views:
        raise UsageError(f"{path} holds no measured cell")
    return views
