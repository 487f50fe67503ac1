"""`vramtui show FILE`: the peak summary of a saved session (its JSON or CSV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure.environment import Environment
from vramtui.measure.rank_summary import KEY, merge
from vramtui.measure.summary_format import read_summary, saved_environment, view_from
from vramtui.report.ranks_text import ranks_text
from vramtui.report.saved import csv_rows, summary_from_json
from vramtui.report.summary_text import device_note, series_labels, summary_text
from vramtui.report.tables import table
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
    parser.add_argument(
        "more", nargs="*", metavar="FILE",
        help="more .json summaries of one tensor-parallel run (one per node): merged by rank",
    )  # fmt: skip
    parser.set_defaults(command=run)


def _csv_backend(path: Path, rows: list[dict[str, str]]) -> str | None:
    """What the engine ran on: the JSON saved beside the CSV says; else a CSV with no
    allocator reserve and no NVML reading anywhere is a CPU run (RSS)."""
    beside = path.with_suffix(".json")
    if beside.is_file():
        try:
            backend = saved_environment(json.loads(beside.read_text(encoding="utf-8"))).backend
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            backend = None
        if backend is not None:
            return backend
    if rows and not any(r["reserved_bytes"] or r["nvml_process_bytes"] for r in rows):
        return "cpu"
    return None


Peaks = dict[str, tuple[int, str, str]]  # column -> (value, token, phase)


def _track(peaks: Peaks, cells: dict[str, str], where: str) -> None:
    for _, column in _CSV_PEAKS:
        text = cells[column]
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{where}: {column} is not a whole number: {text!r}") from None
        if column not in peaks or value > peaks[column][0]:
            peaks[column] = (value, cells["token"] or "—", cells["phase"])


def _read_csv(path: Path) -> tuple[list[dict[str, str]], Peaks, dict[str, Peaks]]:
    """(rows, the run's device's peaks, other devices' peaks of a placed model)."""
    cells_of = csv_rows(path)
    peaks: Peaks = {}
    others: dict[str, Peaks] = {}
    main: str | None = None
    for n, cells in enumerate(cells_of, start=2):
        # a tensor-parallel run's CSV: each rank's rows apart, as a placed model's devices
        device = f"rank {cells['rank']}" if cells.get("rank") else cells.get("device", "")
        main = device if main is None else main
        target = peaks if device == main else others.setdefault(device, {})
        _track(target, cells, f"{path}, line {n}")
    return cells_of, peaks, others


def _device_table(others: dict[str, Peaks]) -> list[str]:
    if not others:
        return []

    def peak(p: Peaks, column: str) -> str:
        return format_bytes(p[column][0], 2) if column in p else "–"

    rows = [
        (
            device,
            peak(p, "step_peak_bytes"),
            peak(p, "reserved_bytes"),
            peak(p, "nvml_process_bytes"),
        )  # fmt: skip
        for device, p in others.items()
    ]
    ranks = all(name.startswith("rank ") for name in others)
    if ranks:
        rows = [(row[0].removeprefix("rank "), *row[1:]) for row in rows]
    header = ("rank" if ranks else "device", "peak", "reserved", "NVML process")
    title = "the other ranks:" if ranks else "the model's other devices:"
    return ["", title, table(rows, header)]


def csv_peaks(path: Path) -> str:
    cells_of, peaks, others = _read_csv(path)
    tokens = {c["token"] for c in cells_of if c["source"] == "engine" and c["token"]}
    backend = _csv_backend(path, [c for c in cells_of if c.get("device") not in others])
    labels = {**series_labels(backend), "kv_cache": "KV cache"}
    lines = [
        (labels[name], format_bytes(peaks[c][0], 2), f"token {peaks[c][1]} ({peaks[c][2]})")
        for name, c in _CSV_PEAKS
        if c in peaks
    ]
    head = f"Peak memory — {path.name}, {len(tokens)} tokens"
    if not lines:
        return head
    note = device_note(Environment(backend=backend, memory_source="process RSS"))
    body = [head, "", table(lines, ("series", "peak", "at"))] + ([note] if note else [])
    return "\n".join(body + _device_table(others))


def run(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if args.more and path.suffix.lower() != ".json":
        raise UsageError("only .json summaries merge by rank")
    if path.suffix.lower() == ".csv":
        print(csv_peaks(path))
    elif path.suffix.lower() == ".json":
        saved = summary_from_json(path)
        if args.more:
            saved = merge([saved, *(summary_from_json(Path(m).expanduser()) for m in args.more)])
        summary = read_summary(saved)
        predicted = None
        if summary.devices:  # placed: each device predicted for the run's placement
            from vramtui.analysis.placed_comparison import placed_estimates

            predicted = placed_estimates(view_from(saved, []), only_cached=False)
        print(summary_text(summary, predicted))
        if KEY in saved:
            print("\n" + ranks_text(saved))
    else:
        raise UsageError(f"expected a .json or .csv file written by vramtui, got {path.name}")
    return 0
