"""Held-out accuracy of the estimator on quantized cells measured on a GPU.

Reads what `vramtui bench` measured with --quant: bench CSVs, or the JSON files of
benchmarks/quant_table.py (its `sweeps[].cells` are the CSV's rows). Every
completed cell with a quantization (weights or KV cache) is predicted exactly as
`vramtui estimate` would (the storage rules, the loader's and the dequantizing
forward's transients, predict/quantized.py), and the script writes a markdown
table and a JSON file: predicted vs measured weights, peak allocated, peak
reserved and peak NVML process memory, each with its error, every cell listed.

No constant is fitted to these cells: the estimator's calibration was set on
unquantized OPT cells (benchmarks/results/calibrate/), the quantizers' rules are
read from their source and checked on the CPU (tests/test_quant_storage.py).
Goals: peak allocated within 1 %, NVML within 3 %. Bench CSVs do not record
--cache-bits: quantized-cache cells are predicted at the default, 4 bits.

Usage:
  python benchmarks/quant_accuracy.py FILE [FILE ...] --out benchmarks/results/quant_accuracy
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402
from traced_accuracy import cell_spec  # noqa: E402

from vramtui.commands.estimate import resolve_for_planning  # noqa: E402
from vramtui.predict.estimator import estimate_run  # noqa: E402

GOALS = {"allocated": 1.0, "nvml": 3.0}  # percent
FIGURES = ("weights", "allocated", "reserved", "nvml")
ENVIRONMENT = ("device_name", "driver", "torch", "transformers")


@dataclass(frozen=True)
class Cell:
    file: str
    model: str
    quant: str  # the label: nf4+dq, int8, ...
    cache: str
    prompt_tokens: int
    tokens: int
    batch: int
    dtype: str
    measured_weights: int
    predicted_weights: int
    measured_allocated: int
    predicted_allocated: int
    measured_reserved: int
    predicted_reserved: int
    measured_nvml: int
    predicted_nvml: int

    def error(self, what: str) -> float:
        measured = getattr(self, f"measured_{what}")
        return (getattr(self, f"predicted_{what}") - measured) / measured * 100

    def within(self, what: str) -> bool:
        return abs(self.error(what)) <= GOALS[what]


def read_rows(path: Path) -> list[dict[str, str]]:
    """A bench CSV's rows, or the cells of a quant_table JSON, as the CSV's text."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        cells = [cell for sweep in data.get("sweeps", []) for cell in sweep.get("cells", [])]
        return [{k: "" if v is None else str(v) for k, v in cell.items()} for cell in cells]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def quantized(row: dict[str, str]) -> bool:
    return (row.get("quant") or "none") != "none" or row.get("cache") == "quantized"


def predict(row: dict[str, str], source: str) -> Cell | None:
    """The cell predicted, or None where it did not complete or is not quantized."""
    if row.get("status") != "completed" or not quantized(row):
        return None
    label = row.get("quant_label") or row.get("quant") or "none"
    spec, gpu = cell_spec(row, quant=row.get("quant") or "none", double_quant=label.endswith("+dq"))
    est = estimate_run(resolve_for_planning(spec, gpu, environ={}))
    assert est is not None
    return Cell(
        source, spec.model, label, spec.cache, spec.prompt_tokens, spec.tokens, spec.batch,
        spec.dtype or "",
        int(row["weights_bytes"]), est.weights_bytes,
        int(row["peak_allocated_bytes"]), est.peak_allocated_bytes,
        int(row["peak_reserved_bytes"]), est.peak_reserved_bytes,
        int(row["peak_nvml_process_bytes"]), est.peak_total_bytes,
    )  # fmt: skip


def markdown(cells: list[Cell], environment: dict[str, str]) -> str:
    head = (
        "| model | quant | cache | prompt + new | batch | dtype | weights (measured) | error "
        "| allocated (measured) | error | reserved (measured) | error "
        "| NVML process (measured) | error |\n" + "| --- " * 14 + "|\n"
    )
    lines = [
        f"| {c.model} | {c.quant} | {c.cache} | {c.prompt_tokens} + {c.tokens} | {c.batch} "
        f"| {c.dtype} | {c.measured_weights:,} | {c.error('weights'):+.3f} % "
        f"| {c.measured_allocated:,} | {c.error('allocated'):+.3f} % "
        f"| {c.measured_reserved:,} | {c.error('reserved'):+.2f} % "
        f"| {c.measured_nvml:,} | {c.error('nvml'):+.2f} % |"
        for c in cells
    ]
    within = {w: sum(c.within(w) for c in cells) for w in GOALS}
    misses = [c for c in cells if not (c.within("allocated") and c.within("nvml"))]
    summary = (
        f"\nHeld out: all {len(cells)} quantized cells (no estimator constant was fitted to "
        f"them). Within the goals: allocated (1 %) {within['allocated']}, NVML (3 %) "
        f"{within['nvml']}.\n"
        + "".join(
            f"- miss: {c.model} {c.quant} {c.prompt_tokens} + {c.tokens} batch "
            f"{c.batch}: allocated {c.error('allocated'):+.2f} %, NVML "
            f"{c.error('nvml'):+.2f} %\n"
            for c in misses
        )  # fmt: skip
        + f"Measured on {environment.get('device_name')} (driver {environment.get('driver')}, "
        f"torch {environment.get('torch')}, transformers {environment.get('transformers')}); "
        "predicted here.\n"
    )
    return head + "\n".join(lines) + "\n" + summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench CSVs or quant_table JSONs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells: list[Cell] = []
    environment: dict[str, str] = {}
    for path in args.files:
        for row in read_rows(path):
            cell = predict(row, path.name)
            if cell is not None:
                cells.append(cell)
                environment = {k: row.get(k, "") for k in ENVIRONMENT}
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(cells, environment)
    (args.out / "accuracy.md").write_text(text)
    rows: list[dict[str, Any]] = [
        {**asdict(c), **{f"error_{w}_percent": round(c.error(w), 4) for w in FIGURES}}
        for c in cells
    ]
    write_json(args.out / "accuracy.json", {"environment": environment, "held_out": True,
                                            "goals_percent": GOALS, "cells": rows})  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
