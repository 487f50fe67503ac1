"""How close the training estimate comes to what `vramtui train` measured.

Reads the JSON summaries of training runs (a session's summary with a training spec:
`spec.method`, and a `training` section), predicts each cell with
`vramtui.predict.training` for the same model, recipe and shape, and writes a markdown
table and a JSON file: predicted vs measured peak allocated, peak reserved and peak
NVML process memory, each with its error, and the phase and step of the peak both ways.
No constant is fitted to these cells: every prediction is the estimator's as it stands.

Usage:
  python benchmarks/train_accuracy.py                     # benchmarks/results/train/**/*.json
  python benchmarks/train_accuracy.py run1.json run2.json --out /tmp/train_accuracy
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.predict.training.config_steps import config_train_trace  # noqa: E402
from vramtui.predict.training.replay import TrainingEstimate, estimate_training  # noqa: E402
from vramtui.predict.training.trace import TrainShape, train_trace  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402
from vramtui.runspec.train_spec import TrainSpec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GOALS = {"allocated": 1.0, "nvml": 3.0}  # percent, on held-out cells
WHAT = ("allocated", "reserved", "nvml")


@dataclass(frozen=True)
class Row:
    source: str
    model: str
    method: str
    optim: str
    checkpointing: bool
    batch: int
    seq: int
    dtype: str
    backend: str
    measured: dict[str, int | None]
    predicted: dict[str, int]
    measured_peak: str | None  # "step 2, backward"
    predicted_peak: str

    def error(self, what: str) -> float | None:
        """Percent (predicted - measured) / measured; None where not measured."""
        measured = self.measured.get(what)
        if not measured:
            return None
        return 100.0 * (self.predicted[what] - measured) / measured


def is_training(summary: dict[str, Any]) -> bool:
    spec = summary.get("spec") or {}
    return "method" in spec and "base" in spec and summary.get("status") == "completed"


def _devices(summary: dict[str, Any], backend: str) -> DeviceList:
    env = summary.get("environment") or {}
    cpu = DeviceChoice("cpu", "CPU", 1 << 40, 1 << 40)
    if backend != "cuda":
        return DeviceList((cpu,), True)
    total = env.get("device_total_bytes") or 80 * 10**9
    gpu = DeviceChoice("cuda:0", env.get("device_name") or env.get("gpu_name") or "GPU",
                       total, total)  # fmt: skip
    return DeviceList((gpu, cpu), True)


def predict(
    summary: dict[str, Any], approximate: bool = False
) -> tuple[TrainSpec, TrainShape, TrainingEstimate]:
    """The traced estimate of a summary's run, or with `approximate` the one written from
    the config's numbers (config_steps.py; traced where its family is not written)."""
    spec = TrainSpec.from_dict(summary["spec"])
    device = str(spec.base.device)
    backend = "cuda" if device.startswith("cuda") else "cpu"
    resolved = resolve(spec.base, _devices(summary, backend), environ={})
    if resolved.config is None:
        raise ValueError(f"no config for {spec.base.model}: {resolved.model_note}")
    shape = TrainShape.of(spec, resolved.backend)
    config = dict(resolved.config)
    written = config_train_trace(config, shape) if approximate else None
    traced = written or train_trace(spec.base.model, config, shape)
    return spec, shape, estimate_training(traced, shape)


def _peak_text(peak: dict[str, Any] | None) -> str | None:
    return f"step {peak['step']}, {peak['phase']}" if peak else None


def row(path: Path, summary: dict[str, Any], approximate: bool = False) -> Row:
    spec, shape, est = predict(summary, approximate)
    training = summary.get("training") or {}
    return Row(
        source=path.name, model=spec.base.model, method=shape.method, optim=shape.optim,
        checkpointing=shape.grad_checkpointing, batch=shape.batch, seq=shape.seq,
        dtype=shape.dtype, backend=shape.backend,
        measured={
            "allocated": summary.get("peak_allocated_bytes"),
            "reserved": summary.get("peak_reserved_bytes"),
            "nvml": summary.get("peak_nvml_process_bytes"),
        },
        predicted={
            "allocated": est.peak_allocated_bytes,
            "reserved": est.peak_reserved_bytes,
            "nvml": est.peak_total_bytes,
        },
        measured_peak=_peak_text(training.get("peak")),
        predicted_peak=f"step {est.peak_step}, {est.peak_phase}",
    )  # fmt: skip


def recipe_spec(model: str, recipe: str) -> dict[str, Any]:
    """The TrainSpec of a `train_gpu.json` cell from its recipe line (as `vramtui train`
    states it: "lora, seq 512, micro-batch 4, optim adamw, grad checkpointing off, LoRA
    r=16 alpha=32 on all-linear"), run as train_gpu.sh runs every cell: 3 steps,
    bfloat16 (the GPU's default), on cuda:0."""
    parts = [p.strip() for p in recipe.split(",")]
    words = dict(p.split(" ", 1) for p in parts[1:] if not p.startswith(("LoRA", "grad")))
    spec = TrainSpec(
        base=RunSpec(model=model, batch=int(words["micro-batch"]), dtype="bfloat16",
                     device="cuda:0"),
        method=parts[0], seq=int(words["seq"]), steps=3, optim=words["optim"],
        grad_checkpointing="grad checkpointing on" in parts,
    )  # fmt: skip
    return spec.to_dict()


def cells_as_summaries(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A `train_gpu.json` (train_gpu_summary.py: every cell's measured figures, the
    sessions themselves left on the device) read as one summary per cell."""
    gpus = (data.get("provenance") or {}).get("gpus") or [None]
    out = []
    for cell in data["cells"]:
        summary = {
            "status": cell["status"],
            "spec": recipe_spec(cell["model"], cell["recipe"]),
            "peak_allocated_bytes": cell["peak_allocated_bytes"],
            "peak_reserved_bytes": cell["peak_reserved_bytes"],
            "peak_nvml_process_bytes": cell["peak_nvml_process_bytes"],
            "training": {"peak": {"step": cell["peak_step"], "phase": cell["peak_phase"]}},
            "environment": {"device_name": gpus[0]},
        }
        out.append((cell["cell"], summary))
    return out


def read_rows(paths: list[Path], approximate: bool = False) -> list[Row]:
    rows = []
    for path in paths:
        data = json.loads(path.read_text())
        found = cells_as_summaries(data) if "cells" in data else [(path.name, data)]
        for name, summary in found:
            if is_training(summary):
                rows.append(row(path.with_name(name), summary, approximate))
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f} %"


def markdown(rows: list[Row], basis: str = "traced") -> str:
    head = ("| model | method | optim | ckpt | batch × seq | allocated | reserved | NVML "
            "| peak measured | peak predicted | file |")  # fmt: skip
    lines = [
        f"# Training estimate ({basis}) vs measured",
        "",
        f"Goals: allocated within {GOALS['allocated']} %, NVML within {GOALS['nvml']} %. "
        "Errors are (predicted - measured) / measured.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        errors = " | ".join(_pct(r.error(w)) for w in WHAT)
        lines.append(
            f"| {r.model} | {r.method} | {r.optim} | {'on' if r.checkpointing else 'off'} "
            f"| {r.batch} × {r.seq} | {errors} | {r.measured_peak or '–'} "
            f"| {r.predicted_peak} | {r.source} |"
        )
    for what, goal in GOALS.items():
        scored = [r.error(what) for r in rows if r.error(what) is not None]
        within = sum(abs(e) <= goal for e in scored if e is not None)
        lines.append("")
        lines.append(f"{what}: {within} of {len(scored)} cells within {goal} %")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "train_accuracy")
    parser.add_argument(
        "--approximate", action="store_true",
        help="predict with the estimate written from the config's numbers, not the traced one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    paths = args.summaries or sorted((RESULTS / "train").glob("**/*.json"))
    rows = read_rows(paths, args.approximate)
    if not rows:
        print("no finished training summaries found", file=sys.stderr)
        return 1
    text = markdown(rows, "approximate" if args.approximate else "traced")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    cells = [{**asdict(r), **{f"error_{w}_percent": r.error(w) for w in WHAT}} for r in rows]
    basis = "approximate" if args.approximate else "traced"
    write_json(
        args.out.with_suffix(".json"), {"basis": basis, "goals_percent": GOALS, "cells": cells}
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
