"""`vramtui show FILE`: the peak summary of a saved session (its JSON or CSV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.report.saved import csv_rows, summary_from_json
from vramtui.report.text import device_note, series_labels, summary_text, table
from vramtui.units import format_bytes

# CSV column -> the series it holds (named per backend by report.text.series_labels).
_CSV_PEAKS = (
    ("nvml_process", "nvml_process_bytes"),
    ("reserved", "reserved_bytes"),
    ("allocated", "allocated_bytes"),
    ("step_peak", "step_peak_bytes"),
    ("kv_cache", "kv_cache_bytes"),
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("show", help="print the peak summary of a saved session")
    parser.add_argument("file", help="a session's .json or .csv, as vramtui wrote it")
    parser.set_defaults(command=run)


def _csv_backend(path: Path, rows: list[dict[str, str]]) -> str | None:
    """What the engine ran on: the JSON saved beside the CSV says; else a CSV with no
    allocator reserve and no NVML reading anywhere is a CPU run (RSS)."""
    beside = path.with_suffix(".json")
    if beside.is_file():
        try:
            backend = json.loads(beside.read_text(encoding="utf-8"))["environment"]["backend"]
            return str(backend)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if rows and not any(r["reserved_bytes"] or r["nvml_process_bytes"] for r in rows):
        return "cpu"
    return None


def csv_peaks(path: Path) -> str:
    cells_of = csv_rows(path)
    peaks: dict[str, tuple[int, str, str]] = {}
    tokens = set()
    for n, cells in enumerate(cells_of, start=2):
        if cells["source"] == "engine" and cells["token"]:  # one engine row a step
            tokens.add(cells["token"])
        for _, column in _CSV_PEAKS:
            text = cells[column]
            if not text:
                continue
            try:
                value = int(text)
            except ValueError:
                raise UsageError(
                    f"{path}, line {n}: {column} is not a whole number: {text!r}"
                ) from None
            if column not in peaks or value > peaks[column][0]:
                peaks[column] = (value, cells["token"] or "—", cells["phase"])
    backend = _csv_backend(path, cells_of)
    labels = {**series_labels(backend), "kv_cache": "KV cache"}
    lines = [
        (labels[name], format_bytes(peaks[c][0], 2), f"token {peaks[c][1]} ({peaks[c][2]})")
        for name, c in _CSV_PEAKS
        if c in peaks
    ]
    head = f"Peak memory — {path.name}, {len(tokens)} tokens"
    if not lines:
        return head
    note = device_note({"backend": backend, "memory_source": "process RSS"})
    return "\n".join([head, "", table(lines, ("series", "peak", "at"))] + ([note] if note else []))


def run(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if path.suffix.lower() == ".csv":
        print(csv_peaks(path))
    elif path.suffix.lower() == ".json":
        print(summary_text(summary_from_json(path)))
    else:
        raise UsageError(f"expected a .json or .csv file written by vramtui, got {path.name}")
    return 0
