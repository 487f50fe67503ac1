"""The fast-start sweep goal on a GPU, in one call: the OPT grid with start-up overlapped
(the default), then, while the time budget lasts, the same grid with `--no-overlap`.

    python3 benchmarks/fast_start_grid.py --out DIR [--budget-s 400] [--fork]

1. `vramtui bench --models opt-125m,...,opt-6.7b --tokens 20,2000` (10 cells), whole
   command, as a user runs it: wall time, its ratio to the
   244 s cold sweep of the ten-cell OPT grid (before fast starts).
2. The same with `--no-overlap` (each engine cold, after the previous one ended),
   stopped with Ctrl+C's signal when the budget runs out (bench keeps every finished
   row): wall time where it finished, and every cell's peaks compared to the byte with
   the overlapped sweep's, for the cells both finished.

Progress goes to stdout as it comes (each bench line with the seconds since the start).
DIR/fast_start_grid.json and .md are rewritten after every finished cell, so a call
cut short keeps what it measured; the two bench CSVs are rewritten by bench itself.
A dry run on the CPU: --models opt-125m --tokens 2,4 --device cpu.
"""

from __future__ import annotations

import argparse
import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

COLD_SWEEP_S = 244.0  # the ten-cell OPT grid swept cold, before any fast start
GRID = "opt-125m,opt-350m,opt-1.3b,opt-2.7b,opt-6.7b"
PEAKS = ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes")
FIGURES = (*PEAKS, "weights_bytes", "kv_cache_bytes_final", "tokens_generated")
TIMES = ("load_s", "generate_s", "tokens_per_s")
ENVIRONMENT = ("device_name", "driver", "cuda_runtime", "torch", "transformers", "python")


def bytecode_facts(package: str = "transformers") -> dict[str, Any]:
    """Whether `package` has its bytecode cached (imports of 11-15 s on the H200 host
    against 3.5 s here suggest every engine may compile it again). Imports nothing."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return {"package": package, "found": False}
    root = Path(spec.origin).parent
    tag = sys.implementation.cache_tag
    sources = list(root.rglob("*.py"))
    cached = list(root.rglob(f"__pycache__/*.{tag}.pyc"))
    return {
        "package": package,
        "py_files": len(sources),
        f"{tag}_pyc_files": len(cached),
        "folder_writable": os.access(root, os.W_OK),
        "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
        "pycache_prefix": sys.pycache_prefix,
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open() as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []


class Sweep:
    """One `vramtui bench` command, its stderr streamed with time stamps."""

    def __init__(self, args: argparse.Namespace, name: str, extra: list[str]) -> None:
        self.name = name
        self.csv = args.out / f"grid-{name}.csv"
        cmd = [sys.executable, "-m", "vramtui", "bench", "--models", args.models]
        cmd += ["--tokens", args.tokens, "--device", args.device, "--csv", str(self.csv)]
        self.cmd = [*cmd, "--force", *extra]
        self.lines: list[tuple[float, str]] = []
        self.wall_s: float | None = None
        self.exit_code: int | None = None
        self.stopped_at_budget = False

    def result(self) -> dict[str, Any]:
        rows = read_rows(self.csv)
        done = [r for r in rows if r.get("status") == "completed"]
        return {
            "command": " ".join(["vramtui", *self.cmd[3:]]),
            "exit_code": self.exit_code,
            "wall_s": self.wall_s,
            "complete": self.exit_code == 0 and not self.stopped_at_budget,
            "stopped_at_budget": self.stopped_at_budget,
            "cells_completed": len(done),
            "generate_s_sum": round(sum(float(r["generate_s"] or 0) for r in done), 2),
            "load_s_sum": round(sum(float(r["load_s"] or 0) for r in done), 2),
            "cells": [
                {k: r.get(k) for k in ("model", "tokens", "status", *FIGURES, *TIMES)} for r in rows
            ],
            "progress": [f"{t:7.1f} s  {line}" for t, line in self.lines],
        }

    def run(self, deadline: float, on_line: Any) -> None:
        """Run until it ends or `deadline` (monotonic) passes: then SIGINT, as Ctrl+C."""
        t0 = time.monotonic()
        proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                self.lines.append((round(time.monotonic() - t0, 1), line))
                on_line(self, line)
            if time.monotonic() > deadline and not self.stopped_at_budget:
                self.stopped_at_budget = True
                proc.send_signal(signal.SIGINT)  # bench ends the cell, keeps finished rows
        proc.wait()
        self.wall_s = round(time.monotonic() - t0, 2)
        self.exit_code = proc.returncode


def compare(overlap: dict[str, Any], cold: dict[str, Any] | None) -> dict[str, Any]:
    """Ratios, and each cell's figures to the byte where both sweeps finished it."""
    out: dict[str, Any] = {"reference_cold_s": COLD_SWEEP_S}
    if overlap["complete"]:
        out["ratio_to_reference"] = round(overlap["wall_s"] / COLD_SWEEP_S, 3)
    if cold is None:
        return out
    if overlap["complete"] and cold["complete"]:
        out["ratio_to_measured_cold"] = round(overlap["wall_s"] / cold["wall_s"], 3)
    pairs = [
        (a, b)
        for a, b in zip(overlap["cells"], cold["cells"], strict=False)
        if a["status"] == b["status"] == "completed"
    ]
    out["cells_compared"] = len(pairs)
    out["cells_identical"] = all(all(a[k] == b[k] for k in FIGURES) for a, b in pairs)
    out["different"] = [
        {"model": a["model"], "tokens": a["tokens"], "figure": k, "overlap": a[k], "cold": b[k]}
        for a, b in pairs
        for k in FIGURES
        if a[k] != b[k]
    ]
    return out


def markdown(report: dict[str, Any]) -> str:
    env = report.get("environment") or {}
    lines = [
        "# Fast starts: the OPT grid on the GPU",
        "",
        " · ".join(f"{k} {env[k]}" for k in ENVIRONMENT if env.get(k)),
        f"{report['cpu_count']} CPU cores · `{report['command_line']}`",
        "",
        "| sweep | wall | cells done | generate, sum | load, sum |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, sweep in report["sweeps"].items():
        cut = " (stopped at the budget)" if sweep["stopped_at_budget"] else ""
        lines.append(
            f"| {name}{cut} | {sweep['wall_s']} s | {sweep['cells_completed']} | "
            f"{sweep['generate_s_sum']} s | {sweep['load_s_sum']} s |"
        )
    cmp = report.get("comparison") or {}
    lines += ["", *(f"- {k}: {v}" for k, v in cmp.items() if k != "different")]
    lines += [f"- bytecode cached: {facts}" for facts in report.get("bytecode", [])]
    lines += [f"- differs: {d}" for d in cmp.get("different", [])]
    return "\n".join(lines) + "\n"


def save(args: argparse.Namespace, report: dict[str, Any], sweeps: list[Sweep]) -> None:
    results = report["sweeps"] = {s.name: s.result() for s in sweeps}
    rows = read_rows(sweeps[0].csv) if sweeps else []
    report["environment"] = {k: rows[0].get(k) for k in ENVIRONMENT} if rows else {}
    if "overlap" in results:
        report["comparison"] = compare(results["overlap"], results.get("cold"))
    write_json(args.out / "fast_start_grid.json", report)
    (args.out / "fast_start_grid.md").write_text(markdown(report))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default=GRID)
    parser.add_argument("--tokens", default="20,2000")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--budget-s", type=float, default=400.0, help="for the whole call")
    parser.add_argument("--fork", action="store_true", help="the overlapped sweep with --fork")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    report: dict[str, Any] = {
        "command_line": " ".join(sys.argv),
        "cpu_count": os.cpu_count(),
        "budget_s": args.budget_s,
        "bytecode": [bytecode_facts("transformers"), bytecode_facts("torch")],
    }
    print(report["bytecode"], flush=True)
    sweeps: list[Sweep] = []

    shown = [0.0]

    def on_line(sweep: Sweep, line: str) -> None:
        now = time.monotonic() - start
        cell_ended = line.startswith("cell ")
        if cell_ended or not line.startswith("[") or now - shown[0] > 30:
            shown[0] = now  # the progress bar's lines at most every 30 s
            print(f"[{now:6.1f} s] {sweep.name}: {line}", flush=True)
        if cell_ended:
            save(args, report, sweeps)  # keep what is measured so far

    deadline = start + args.budget_s - 5
    overlap = ["--fork"] if args.fork else []
    for name, extra in (("overlap", overlap), ("cold", ["--no-overlap"])):
        if time.monotonic() > deadline:
            print(f"no time left for the {name} sweep", flush=True)
            break
        sweeps.append(Sweep(args, name, extra))
        print(f"[{time.monotonic() - start:6.1f} s] {name}: {sweeps[-1].cmd[3:]}", flush=True)
        sweeps[-1].run(deadline, on_line)
        save(args, report, sweeps)
        print(f"{name}: {sweeps[-1].wall_s} s, exit {sweeps[-1].exit_code}", flush=True)
    cmp = report.get("comparison", {})
    print({k: v for k, v in cmp.items() if k != "different"}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
