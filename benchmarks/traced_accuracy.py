"""Held-out accuracy of the traced estimator: modern models measured on a GPU.

Reads bench CSVs written by `vramtui bench` (every column the table needs is in
them, with the device and versions), predicts each completed cell with the
estimator exactly as `vramtui estimate` would (the model's own code traced on the
meta device, predict/tracing/), and writes a markdown table and a JSON file:
predicted vs measured peak allocated, peak reserved and peak NVML process
memory, each with its error.

Every cell here is held out: no constant of the estimator was fitted to any of
these architectures or shapes (the calibration constants were set on OPT cells,
benchmarks/results/calibrate/).

Usage:
  python benchmarks/traced_accuracy.py CSV [CSV ...] --out benchmarks/results/traced_accuracy
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.predict.estimator import estimate_run  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

GOALS = {"allocated": 1.0, "nvml": 3.0}  # percent, the goals on held-out cells


@dataclass(frozen=True)
class Row:
    file: str
    model: str
    prompt_tokens: int
    tokens: int
    batch: int
    dtype: str
    attn: str
    cache: str
    measured_allocated: int
    predicted_allocated: int
    measured_reserved: int
    predicted_reserved: int
    measured_nvml: int
    predicted_nvml: int
    # a static cache's compiled step: first | cached as the engine recorded it, "first?"
    # where the CSV predates that record (predicted as a first compile); "" dynamic
    compile: str = ""

    def error(self, what: str) -> float:
        measured = getattr(self, f"measured_{what}")
        return (getattr(self, f"predicted_{what}") - measured) / measured * 100


def cell_spec(row: dict[str, str], **more: Any) -> tuple[RunSpec, DeviceList]:
    """The run a bench CSV row measured (`more`: other RunSpec fields), and its GPU."""
    total = int(row["device_total_bytes"])
    gpu = DeviceList((DeviceChoice("cuda:0", row["device_name"], total, total),), True)
    spec = RunSpec(
        model=row["model"],
        tokens=int(row["tokens"]),
        prompt_tokens=int(row["prompt_tokens"]),
        batch=int(row["batch"]),
        dtype=row["dtype"],
        attn=row["attn"],
        device="cuda:0",
        cache=row.get("cache") or "dynamic",
        **more,
    )
    return spec, gpu


def predict(row: dict[str, str], source: str) -> Row | None:
    if row["status"] != "completed":
        return None
    spec, gpu = cell_spec(row)
    # a static cache's compiled step: as the engine found inductor's cache
    compile = "cached" if row.get("compiled") == "cached" else "first"
    est = estimate_run(resolve(spec, gpu, environ={}), compile=compile)
    assert est is not None
    label = "" if est.compile is None else row.get("compiled") or "first?"
    return Row(
        source, spec.model, spec.prompt_tokens, spec.tokens, spec.batch, spec.dtype or "",
        spec.attn, spec.cache,
        int(row["peak_allocated_bytes"]), est.peak_allocated_bytes,
        int(row["peak_reserved_bytes"]), est.peak_reserved_bytes,
        int(row["peak_nvml_process_bytes"]), est.peak_total_bytes, label,
    )  # fmt: skip


def markdown(rows: list[Row], environment: dict[str, str]) -> str:
    head = (
        "| model | prompt + new | batch | dtype | attn | cache | compile | allocated (measured) "
        "| error | reserved (measured) | error | NVML process (measured) | error |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = [
        f"| {r.model} | {r.prompt_tokens} + {r.tokens} | {r.batch} | {r.dtype} | {r.attn} "
        f"| {r.cache} | {r.compile or '–'} "
        f"| {r.measured_allocated:,} | {r.error('allocated'):+.3f} % "
        f"| {r.measured_reserved:,} | {r.error('reserved'):+.2f} % "
        f"| {r.measured_nvml:,} | {r.error('nvml'):+.2f} % |"
        for r in rows
    ]
    summary = (
        f"\nHeld out: all {len(rows)} cells (no estimator constant was fitted to these "
        "models or shapes).\n"
        + "".join(worst_line(label, group) for label, group in groups(rows))
        + f"Goals: allocated within {GOALS['allocated']} %, NVML within {GOALS['nvml']} %. "
        "`first?`: a static cell measured before the engine recorded its compile, "
        "predicted as a first compile.\n"
        f"Measured on {environment.get('device_name')} (driver {environment.get('driver')}, "
        f"torch {environment.get('torch')}, transformers {environment.get('transformers')}); "
        "predicted here from traces made with this machine's torch and transformers.\n"
    )
    return head + "\n".join(lines) + "\n" + summary


def groups(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """The cells by cache and compile, in the table's order of appearance."""
    found: dict[str, list[Row]] = {}
    for r in rows:
        label = r.cache if not r.compile else f"{r.cache}, {r.compile} compile"
        found.setdefault(label, []).append(r)
    return list(found.items())


def worst_line(label: str, rows: list[Row]) -> str:
    worst = {w: max(abs(r.error(w)) for r in rows) for w in ("allocated", "reserved", "nvml")}
    within = {w: sum(abs(r.error(w)) <= GOALS[w] for r in rows) for w in GOALS}
    return (
        f"- {label}: {len(rows)} cells; worst error "
        + ", ".join(f"{w} {v:.3f} %" for w, v in worst.items())
        + f"; within the goals: allocated {within['allocated']}, NVML {within['nvml']}.\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows: list[Row] = []
    environment: dict[str, str] = {}
    for path in args.csv:
        with path.open() as f:
            for raw in csv.DictReader(f):
                keys = ("device_name", "driver", "torch", "transformers")
                environment = {k: raw[k] for k in keys}
                row = predict(raw, path.name)
                if row is not None:
                    rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.md").write_text(markdown(rows, environment))
    data = {
        "environment": environment,
        "held_out": True,
        "rows": [
            {**asdict(r), **{f"error_{w}_percent": round(r.error(w), 4) for w in GOALS}}
            | {"error_reserved_percent": round(r.error("reserved"), 4)}
            for r in rows
        ],
    }
    write_json(args.out / "accuracy.json", data)
    print(markdown(rows, environment))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
