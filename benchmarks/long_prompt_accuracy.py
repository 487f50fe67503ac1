"""Held-out accuracy at long prompts: `vramtui run` sessions against their estimates.

Reads the session summaries `vramtui run --json` wrote (benchmarks/long_prompt_gpu.sh:
four families, prompts of 2000, 4000 and 8000 tokens, sdpa and eager, batch 1, 16 new
tokens), estimates each run as `vramtui show` compares it (the model's own code traced on
the meta device, or OPT's record; analysis/breakdown.py's `run_estimate`), and writes a
markdown table and a JSON: every cell listed, predicted against measured peak allocated
(the process RSS on the CPU, against tensors plus the Python process), peak reserved and
NVML process memory, each with its error, and whether peak allocated is within the goal.
A session that did not complete, or whose run cannot be estimated, is listed with the
reason and not scored.

No constant of the estimator was fitted to these cells: they are held out.

    python benchmarks/long_prompt_accuracy.py DIR_OR_JSON [...] --out benchmarks/results/long_prompt
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

from vramtui.analysis.breakdown import run_estimate  # noqa: E402
from vramtui.measure.summary_format import view_from  # noqa: E402
from vramtui.predict.cpu_process import cpu_process  # noqa: E402
from vramtui.predict.estimator import Estimate  # noqa: E402
from vramtui.runspec import RunSpec  # noqa: E402

GOAL_PERCENT = 1.0  # peak allocated, held-out long prompts
ENVIRONMENT = ("device_name", "driver", "torch", "transformers", "python")


@dataclass(frozen=True)
class Cell:
    file: str
    model: str
    prompt_tokens: int
    tokens: int
    batch: int
    attn: str
    dtype: str
    backend: str
    status: str  # the session's; "not estimated: ..." where no estimate could be made
    measured_allocated: int | None = None
    predicted_allocated: int | None = None
    measured_reserved: int | None = None
    predicted_reserved: int | None = None
    measured_nvml: int | None = None
    predicted_nvml: int | None = None

    @property
    def scored(self) -> bool:
        return self.measured_allocated is not None and self.predicted_allocated is not None

    def error(self, what: str) -> float | None:
        measured = getattr(self, f"measured_{what}")
        predicted = getattr(self, f"predicted_{what}")
        if not measured or predicted is None:
            return None
        return (predicted - measured) / measured * 100

    @property
    def within(self) -> bool | None:
        error = self.error("allocated")
        return None if error is None else abs(error) <= GOAL_PERCENT


def summaries(paths: list[Path]) -> list[Path]:
    """Every session summary named, folders searched for *.json (sorted)."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return found


def _predicted(est: Estimate) -> tuple[int, int | None, int | None]:
    """(allocated, reserved, NVML) as the engine measures them on the run's backend: on
    the CPU its figure is the RSS, the tensors plus the Python process."""
    if est.backend == "cuda":
        return est.peak_allocated_bytes, est.peak_reserved_bytes, est.peak_total_bytes
    return est.peak_allocated_bytes + cpu_process().bytes, None, None


def score(path: Path) -> tuple[Cell, dict[str, Any]]:
    """One session's cell, and the environment it recorded."""
    saved = json.loads(path.read_text())
    view = view_from(saved, [])
    spec = view.spec
    if not isinstance(spec, RunSpec):
        raise SystemExit(f"{path}: not a `vramtui run` session")
    environment = saved.get("environment") or {}
    backend = str(environment.get("backend") or "cuda")
    cell = Cell(
        path.name, spec.model, spec.prompt_tokens, spec.tokens, spec.batch, spec.attn,
        str(saved.get("dtype") or spec.dtype or ""), backend, str(saved.get("status")),
    )  # fmt: skip
    if cell.status != "completed":
        return cell, environment
    est = run_estimate(view, only_cached=False)
    if est is None:
        return _replace(
            cell, status="not estimated: the estimator cannot model this run"
        ), environment
    allocated, reserved, nvml = _predicted(est)
    return _replace(
        cell,
        measured_allocated=saved.get("peak_allocated_bytes"),
        predicted_allocated=allocated,
        measured_reserved=saved.get("peak_reserved_bytes"),
        predicted_reserved=reserved,
        measured_nvml=saved.get("peak_nvml_process_bytes"),
        predicted_nvml=nvml,
    ), environment


def _replace(cell: Cell, **changes: Any) -> Cell:
    return Cell(**{**asdict(cell), **changes})


def _figure(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _percent(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:+.{digits}f} %"


def markdown(cells: list[Cell], environments: list[dict[str, Any]]) -> str:
    head = (
        "| model | prompt + new | attn | dtype | status | allocated (measured) | predicted "
        "| error | within | reserved (measured) | error | NVML process (measured) | error |\n"
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n"
    )
    lines = [
        f"| {c.model} | {c.prompt_tokens} + {c.tokens} | {c.attn} | {c.dtype} | {c.status} "
        f"| {_figure(c.measured_allocated)} | {_figure(c.predicted_allocated)} "
        f"| {_percent(c.error('allocated'), 3)} "
        f"| {'–' if c.within is None else 'yes' if c.within else 'no'} "
        f"| {_figure(c.measured_reserved)} | {_percent(c.error('reserved'), 2)} "
        f"| {_figure(c.measured_nvml)} | {_percent(c.error('nvml'), 2)} |"
        for c in cells
    ]
    return head + "\n".join(lines) + "\n\n" + footer(cells, environments)


def footer(cells: list[Cell], environments: list[dict[str, Any]]) -> str:
    scored = [c for c in cells if c.scored]
    within = sum(bool(c.within) for c in scored)
    text = (
        f"{len(cells)} cells, {len(scored)} scored, {within} within {GOAL_PERCENT} % "
        "peak allocated (held out: no estimator constant was fitted to them)."
    )
    errors = [(abs(c.error("allocated") or 0.0), c) for c in scored]
    if errors:
        worst, cell = max(errors, key=lambda item: item[0])
        text += f" Worst: {worst:.3f} % ({cell.model} {cell.prompt_tokens} {cell.attn})."
    on_cpu = any(c.backend != "cuda" for c in scored)
    if on_cpu:
        text += " On the CPU the allocated figure is the process RSS."
    for env in environments:
        text += "\nMeasured on " + ", ".join(f"{k} {env.get(k)}" for k in ENVIRONMENT) + "."
    return text + "\nPredicted from traces made with this machine's torch and transformers.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="+", type=Path, help="summaries, or folders of them")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cells: list[Cell] = []
    environments: list[dict[str, Any]] = []
    for path in summaries(args.sessions):
        cell, environment = score(path)
        cells.append(cell)
        kept = {k: environment.get(k) for k in ENVIRONMENT}
        if environment and kept not in environments:
            environments.append(kept)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(cells, environments)
    (args.out / "long_prompt_accuracy.md").write_text(text)
    rows = [
        {
            **asdict(c),
            "error_allocated_percent": c.error("allocated"),
            "error_reserved_percent": c.error("reserved"),
            "error_nvml_percent": c.error("nvml"),
            "within_goal": c.within,
        }  # fmt: skip
        for c in cells
    ]
    data = {"goal_allocated_percent": GOAL_PERCENT, "held_out": True,
            "environments": environments, "cells": rows}  # fmt: skip
    write_json(args.out / "long_prompt_accuracy.json", data)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
