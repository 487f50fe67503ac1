"""The fine-tuning table (*GPU*): `vramtui train` over models x methods x gradient
checkpointing x sequence, micro-batch 1, 3 steps each, every cell a fresh engine process.

    python3 benchmarks/train_table.py run --out DIR [--lanes 3] [--budget-s 480] [--only SUBSTR]
    python3 benchmarks/train_table.py table DIR --out PREFIX   # PREFIX.md, PREFIX.json

`run` asks the approximate training estimate (`vramtui estimate --workload ...`, CPU, a
fraction of a second) for each cell's peak, skips a cell predicted past the card's memory
by more than 5 % (listed as not run), and runs the others up to `--lanes` at a time while
their predicted peaks together stay under 90 % of the card (a cell's imports and build take
most of its wall time and use the CPU; the lanes overlap those). Each cell's start and end
are logged (DIR/runs.jsonl) with its session JSON (DIR/NAME.json). `table` writes the
measured table; a cell whose training steps overlapped another cell's in time has its step
time marked "shared" (its memory figures are its own process's: the allocator's and NVML's
per-process reading; only its speed is affected by a neighbour).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402
from train_gpu_summary import steady_s  # noqa: E402

MODELS = ("qwen2.5-0.5b", "opt-1.3b", "llama-3.2-1b", "llama-3.2-3b", "mistral-7b-v0.3")
METHODS = ("full", "lora", "qlora")
SEQS = (512, 2048)
# the second optimizer of the held-out set: bitsandbytes' 8-bit AdamW on two models
EIGHT_BIT = (
    ("qwen2.5-0.5b", "full", False, 512),
    ("qwen2.5-0.5b", "full", True, 2048),
    ("llama-3.2-1b", "lora", False, 2048),
    ("opt-1.3b", "full", True, 512),
)


@dataclass(frozen=True)
class Cell:
    model: str
    method: str
    ckpt: bool
    seq: int
    optim: str = "adamw"

    @property
    def name(self) -> str:
        tail = "" if self.optim == "adamw" else f"-{self.optim}"
        return f"{self.model}-{self.method}-{'gc' if self.ckpt else 'nogc'}-{self.seq}{tail}"

    def flags(self) -> list[str]:
        flags = [
            "-m",
            self.model,
            "--method",
            self.method,
            "--seq",
            str(self.seq),
            "--batch",
            "1",
            "--optim",
            self.optim,
        ]
        return flags + (["--grad-checkpointing"] if self.ckpt else [])


def cells() -> list[Cell]:
    grid = [
        Cell(m, meth, ck, s)
        for m in MODELS
        for meth in METHODS
        for ck in (False, True)
        for s in SEQS
    ]
    return grid + [Cell(m, meth, ck, s, "adamw-8bit") for m, meth, ck, s in EIGHT_BIT]


def predicted_total(cell: Cell) -> int:
    argv = [sys.executable, "-m", "vramtui", "estimate", "--workload", cell.method, "--json"]
    out = subprocess.run(
        argv + cell.flags()[:2] + cell.flags()[4:], capture_output=True, text=True, check=True
    )
    return int(json.loads(out.stdout)["peak_total_bytes"])


def device_total(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.get_device_properties(device).total_memory)
    import psutil

    return int(psutil.virtual_memory().total)  # a dry run on the CPU


def run(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget_s
    total = device_total(args.device)
    room = args.memory_gib * 2**30 if args.memory_gib else total * 0.9  # for the lanes
    wanted = args.only.split(",") if args.only else [""]
    todo = [c for c in cells() if any(w in c.name for w in wanted)]
    todo.sort(key=lambda c: min(i for i, w in enumerate(wanted) if w in c.name))
    log = (out / "runs.jsonl").open("a")
    waiting = []
    with ThreadPoolExecutor(8) as pool:  # the estimates run on the CPU, in parallel
        needs = list(pool.map(predicted_total, todo))
    for cell, need in zip(todo, needs, strict=True):
        if need > total * 1.05 or (args.memory_gib and need > room):
            log.write(
                json.dumps(
                    {
                        "cell": cell.name,
                        "not_run": "predicted past the memory given",
                        "predicted_total_bytes": need,
                    }
                )
                + "\n"
            )
            continue
        waiting.append((cell, need))
    log.flush()
    running: list[tuple[Cell, int, subprocess.Popen[bytes], float]] = []
    while waiting or running:
        for item in list(running):
            cell, need, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                log.write(
                    json.dumps(
                        {
                            "cell": cell.name,
                            "start": start,
                            "end": time.time(),
                            "rc": proc.returncode,
                            "predicted_total_bytes": need,
                            "beside": args.beside,
                        }
                    )
                    + "\n"
                )
                log.flush()
        held = sum(need for _, need, _, _ in running)
        fits = [w for w in waiting if held + w[1] <= room or (not running and w[1] <= room)]
        if fits and len(running) < args.lanes and time.time() + 60 < deadline:
            cell, need = fits[0]
            waiting.remove(fits[0])
            argv = [
                sys.executable,
                "-m",
                "vramtui",
                "train",
                "-q",
                "--device",
                args.device,
                "--steps",
                "3",
                "--json",
                str(out / f"{cell.name}.json"),
                "--out",
                str(out / "sessions"),
                *cell.flags(),
            ]
            with (out / f"{cell.name}.txt").open("w") as text:
                proc = subprocess.Popen(argv, stdout=text, stderr=subprocess.STDOUT)
            running.append((cell, need, proc, time.time()))
        elif not running and (not fits or time.time() + 60 >= deadline):
            for cell, need in waiting:
                log.write(
                    json.dumps(
                        {"cell": cell.name, "not_run": "out of time", "predicted_total_bytes": need}
                    )
                    + "\n"
                )
            break
        if time.time() > deadline + 20:  # stop what still runs: its session keeps its steps
            for _, _, proc, _ in running:
                proc.send_signal(signal.SIGINT)
            deadline = float("inf")
        time.sleep(0.5)


def gpu_window(run: dict[str, Any], saved: dict[str, Any]) -> tuple[float, float]:
    """When the cell's steps held the GPU: from the end of its engine's build to its end."""
    startup = (saved.get("timings") or {}).get("startup") or {}
    built = sum(startup.get(k) or 0.0 for k in ("imports_done_s", "device_init_s", "build_s"))
    return run["start"] + built, run["end"]


def rows(folder: Path) -> list[dict[str, Any]]:
    runs = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    by_name = {c.name: c for c in cells()}
    saved = {
        r["cell"]: json.loads((folder / f"{r['cell']}.json").read_text())
        for r in runs
        if (folder / f"{r['cell']}.json").is_file()
    }
    windows = {r["cell"]: gpu_window(r, saved[r["cell"]]) for r in runs if r["cell"] in saved}
    table = []
    for r in runs:
        cell, name = by_name[r["cell"]], r["cell"]
        row: dict[str, Any] = {
            "cell": name,
            "model": cell.model,
            "method": cell.method,
            "grad_checkpointing": cell.ckpt,
            "seq": cell.seq,
            "optim": cell.optim,
            "predicted_total_bytes": r["predicted_total_bytes"],
        }
        if name not in saved:
            row["status"] = r.get("not_run") or f"no session (rc {r.get('rc')})"
            table.append(row)
            continue
        s, (a, b) = saved[name], windows[name]
        training = s.get("training") or {}
        failure = s.get("failure") or {}
        row.update(
            status=s["status"],
            failure=f"{failure.get('kind')} in {failure.get('phase')}"
            f" of step {failure.get('token')}"
            if failure
            else None,
            peak_allocated_bytes=s.get("peak_allocated_bytes"),
            peak_reserved_bytes=s.get("peak_reserved_bytes"),
            peak_nvml_process_bytes=s.get("peak_nvml_process_bytes"),
            peak=(training.get("peak") or {}),
            steady_step_s=steady_s(training.get("step_s") or []),
            shared=bool(r.get("beside"))
            or any(o != name and wa < b and a < wb for o, (wa, wb) in windows.items()),
            session=name + ".json",
        )
        table.append(row)
    return table


def gb(v: int | None) -> str:
    return f"{v / 1e9:.2f}" if v else "–"


def table(args: argparse.Namespace) -> None:
    found = rows(args.folder)
    env = json.loads(next(iter(sorted(args.folder.glob("*.json")))).read_text())["environment"]
    lines = [
        "# Fine-tuning memory, measured",
        "",
        f"{env['device_name']}, driver {env.get('driver', '–')}, torch {env['torch']}, "
        f"transformers {env['transformers']}, Python {env['python']}. "
        "Micro-batch 1, 3 steps, bfloat16, AdamW unless named; GB = 10^9 bytes. "
        "Step time: the median of steps 2-3; "
        "*shared*: another cell's steps ran on the GPU at the same time.",
        "",
        "| model | method | ckpt | seq | optim | peak allocated | reserved | NVML process | "
        "peak at | step time | status |",
        "|" + "---|" * 11,
    ]
    for r in found:
        peak = r.get("peak") or {}
        at = f"step {peak.get('step')}, {peak.get('phase')}" if peak else "–"
        step = (
            f"{r['steady_step_s']:.3f} s" + (" *shared*" if r.get("shared") else "")
            if r.get("steady_step_s") is not None
            else "–"
        )
        status = r["status"] + (f" ({r['failure']})" if r.get("failure") else "")
        lines.append(
            f"| {r['model']} | {r['method']} | {'on' if r['grad_checkpointing'] else 'off'}"
            f" | {r['seq']} | {r['optim']} | {gb(r.get('peak_allocated_bytes'))} | "
            f"{gb(r.get('peak_reserved_bytes'))} | {gb(r.get('peak_nvml_process_bytes'))}"
            f" | {at} | {step} | {status} |"
        )
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    write_json(Path(f"{args.out}.json"), {"environment": env, "cells": found})
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--lanes", type=int, default=3)
    r.add_argument("--budget-s", type=float, default=480)
    r.add_argument("--only", help="cells whose name contains one of these (comma-separated)")
    r.add_argument("--device", default="cuda:0")
    r.add_argument("--beside", help="what else runs on the card (its step times are shared)")
    r.add_argument(
        "--memory-gib",
        type=float,
        help="the card's memory these cells may hold together (default 90 %% of it; a cell "
        "predicted past it is not run): to share the card with other runs",
    )
    t = sub.add_parser("table")
    t.add_argument("folder", type=Path)
    t.add_argument("--out", required=True)
    args = parser.parse_args()
    run(args) if args.what == "run" else table(args)


if __name__ == "__main__":
    main()
