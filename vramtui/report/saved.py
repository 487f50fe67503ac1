"""A saved session read back: its JSON summary, its CSV, or both, as a SessionView.

`vramtui show` prints what a file holds; `vramtui compare` and the compare screen need
the session itself (its per-token series, its breakdown), so this rebuilds one: the
CSV's engine rows become the samples, its NVML rows the NVML stream, and the JSON beside
it (or the JSON itself) gives the spec, the environment, the weights and how it ended.
Either file alone is enough: a CSV without its JSON has no spec or weights; a JSON
without its CSV has no series, only its peaks.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.session import DeviceNvml, NvmlSample, SessionView
from vramtui.measure.summary_format import REQUIRED_KEYS, Item, read_summary, view_from
from vramtui.report.export import (
    CSV_COLUMNS,
    CSV_COLUMNS_RANKS,
    CSV_COLUMNS_V1,
    CSV_COLUMNS_V2,
)
from vramtui.report.summary_text import summary_text

_ENGINE_INTS = ("allocated_bytes", "reserved_bytes", "step_peak_bytes", "kv_cache_bytes")
_NVML_INTS = ("nvml_process_bytes", "nvml_device_used_bytes", "nvml_device_total_bytes")
_DEVICE_INTS = ("allocated_bytes", "reserved_bytes", "step_peak_bytes")
DeviceReading = tuple[str, int | None, int | None, int | None]


def read_text(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def summary_from_json(path: Path) -> dict[str, Any]:
    """A session's JSON summary, checked: one clear UsageError if it is not one."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED_KEYS):
        raise UsageError(f"{path} is not a vramtui session summary")
    try:
        summary_text(read_summary(data))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(
            f"{path} is a damaged vramtui summary ({type(exc).__name__}: {exc})"
        ) from None
    return data


def csv_rows(path: Path) -> list[dict[str, str]]:
    """A session CSV's rows as {column: cell}, its header and row lengths checked."""
    rows = list(csv.reader(read_text(path).splitlines()))
    if not rows or tuple(rows[0]) not in (
        CSV_COLUMNS,
        CSV_COLUMNS_V2,
        CSV_COLUMNS_V1,
        CSV_COLUMNS_RANKS,
    ):
        raise UsageError(f"{path} is not a vramtui session CSV (its header differs)")
    header = rows[0]
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {n}: {len(row)} cells, expected {len(header)}")
        out.append(dict(zip(header, row, strict=True)))
    return out


def whole_cell(cells: dict[str, str], column: str, where: str) -> int | None:
    """A CSV cell as a whole number (None when empty); a UsageError naming it if not one."""
    text = cells[column]
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{where}: {column} is not a whole number: {text!r}") from None


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{where}: t_s is not a number: {text!r}") from None


def _engine_sample(cells: dict[str, str], t: float, phase: str, where: str) -> ev.Sample:
    token = whole_cell({"token": cells["token"]}, "token", where)
    allocated, reserved, step_peak, kv = (whole_cell(cells, c, where) for c in _ENGINE_INTS)
    return ev.Sample(token, t, phase, allocated, reserved, step_peak, kv)


def _device_reading(cells: dict[str, str], where: str) -> DeviceReading:
    allocated, reserved, peak = (whole_cell(cells, c, where) for c in _DEVICE_INTS)
    return (cells["device"], allocated, reserved, peak)


def _events_from_csv(path: Path, rows: list[dict[str, str]]) -> list[Item]:
    """The engine samples and NVML readings, with a Phase at every change of phase.
    A placed model's CSV also holds a row per other device each step (its `device`
    column, right after the step's row, at its time): the session's series are the run's
    own device's, the first named, and each step's sample carries every device's."""
    out: list[Item] = []
    phase = ""
    main = next((c.get("device", "") for c in rows if c["source"] == "engine"), "")
    placed = any(c["source"] == "engine" and c.get("device", "") != main for c in rows)
    step: int | None = None  # the latest step's sample: its index in out
    for n, cells in enumerate(rows, start=2):
        where = f"{path}, line {n}"
        t = _float(cells["t_s"], where)
        if cells["source"] == "engine" and cells.get("device", "") != main:
            sample = out[step] if step is not None else None
            if not isinstance(sample, ev.Sample) or sample.t != t or sample.devices is None:
                raise UsageError(f"{where}: a {cells['device']} reading without its step")
            assert step is not None  # a Sample was found there
            out[step] = replace(sample, devices=(*sample.devices, _device_reading(cells, where)))
            continue
        if cells["phase"] and cells["phase"] != phase:
            phase = cells["phase"]
            out.append(ev.Phase(phase, t))
        if cells["source"] == "nvml":
            reading = NvmlSample(t, *(whole_cell(cells, c, where) for c in _NVML_INTS))
            device = cells.get("device", "")  # a placed model's other GPU: its own stream
            out.append(reading if device in (main, "") else DeviceNvml(device, reading))
            continue
        sample = _engine_sample(cells, t, phase, where)
        if placed:  # its own device first
            sample = replace(sample, devices=((main, *_engine_reading(sample)),))
        out.append(sample)
        step = len(out) - 1
    return out


def _engine_reading(sample: ev.Sample) -> tuple[int | None, int | None, int | None]:
    return sample.allocated, sample.reserved, sample.step_peak


def _pair(path: Path) -> tuple[Path | None, Path | None]:
    """(json, csv) of the session a path names: the other one is the file beside it."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise UsageError(f"expected a .json or .csv file written by vramtui, got {path.name}")
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    other = path.with_suffix(".csv" if suffix == ".json" else ".json")
    pair = (path, other) if suffix == ".json" else (other, path)
    json_path, csv_path = pair
    return (json_path if json_path.is_file() else None, csv_path if csv_path.is_file() else None)


def read_session_files(path: str | Path) -> tuple[dict[str, Any], list[Item]]:
    """The summary and the recorded events of a saved .json or .csv (with the file
    beside it, if any): a CSV alone gets a summary of its name, a JSON alone no events."""
    path = Path(path).expanduser()
    json_path, csv_path = _pair(path)
    summary = summary_from_json(json_path) if json_path else None
    rows = csv_rows(csv_path) if csv_path else []
    if summary is None:
        # a CSV alone does not say what was asked: the tokens requested are not known (0)
        spec = {"model": path.stem, "tokens": 0}
        summary = {"spec": spec, "environment": _csv_environment(rows)}
    items = _events_from_csv(csv_path, rows) if csv_path else []
    return summary, items


def load_view(path: str | Path) -> SessionView:
    """The session a saved .json or .csv records (with the file beside it, if any)."""
    return view_from(*read_session_files(path))


def _csv_environment(rows: list[dict[str, str]]) -> dict[str, Any]:
    """What a CSV alone says of where it ran: no allocator reserve and no NVML
    reading anywhere is a CPU run (process RSS)."""
    if rows and not any(r["reserved_bytes"] or r["nvml_process_bytes"] for r in rows):
        return {"backend": "cpu", "memory_source": "process RSS"}
    return {}
