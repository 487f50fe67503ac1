"""Quantized weights on a GPU, measured: models x {none, int8, nf4} x token budgets.

Each part is one `vramtui bench` sweep (a fresh engine process a cell) with its CSV and
markdown, then a JSON of every cell (weights as stored: packed, quantization state, kept
in full precision; peak allocated, reserved, NVML; bytes/param; tok/s) stamped with the
versions of bitsandbytes, torchao and optimum-quanto. A part that runs past --budget-s
is interrupted as Ctrl+C interrupts a sweep: its finished cells are kept.

Parts (run them in separate calls; each aims at under ~8 minutes on an H100, which is a
guess until one has run):
  methods   every --quant on llama-3.2-1b in bfloat16, 20 new tokens: which kernels run
            here (a cell that cannot run fails with its reason, the others go on)
  short     20 new tokens, prompt 8, batch 1: opt-1.3b, opt-6.7b, llama-3.2-1b,
            qwen2.5-7b, mistral-7b-v0.3, qwen3-30b-a3b x {none, int8, nf4}
  long-opt, long-llama
            2000 new tokens, prompt 8, batch 1: opt-1.3b, llama-3.2-1b x {none, int8, nf4}
  long-7b   2000 new tokens: qwen2.5-7b, mistral-7b-v0.3 x {none, nf4}
  long-moe  2000 new tokens: qwen3-30b-a3b x {none, nf4}
  kv        the KV cache at long context: llama-3.2-1b nf4, prompt 2000, 200 new tokens,
            batch 8, --cache dynamic then --cache quantized (quanto int4)
  parity    checkpoint_parity.py --quant int8 and nf4: opt-1.3b (tied), pythia-1b (untied)

Left out: mixtral-8x7b (46.7B parameters, 93 GB in 16-bit; its experts are 3-D
parameters, which bitsandbytes and torchao left in 16-bit under transformers 5.25 on the
CPU, so int8 and nf4 would hold about as much: more than an 80 GB card). The `short`
part's qwen3-30b-a3b cells show what this machine's transformers does (their
weights_packed_bytes against weights_full_bytes); where it quantizes the experts,
mixtral-8x7b in nf4 fits and is worth a sweep of its own.

    PYTHONPATH=/tmp/site:$PWD python benchmarks/quant_table.py --part short --out $OUT/quant
"""

from __future__ import annotations

import argparse
import csv
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import gpu_environment, package_versions, write_json  # noqa: E402

SEVEN_B = "qwen2.5-7b,mistral-7b-v0.3"
QUANT_PACKAGES = ("bitsandbytes", "torchao", "optimum-quanto")
LEFT_OUT = {
    "mixtral-8x7b": "46.7B parameters, 93 GB in 16-bit; bitsandbytes and torchao left its "
    "3-D expert parameters in 16-bit under transformers 5.25 (CPU check), so int8 and nf4 "
    "would not fit an 80 GB card either"
}


@dataclass(frozen=True)
class Sweep:
    """One `vramtui bench` call."""

    name: str
    models: str
    quant: str = "none,int8,nf4"
    tokens: str = "20"
    prompt: str = "8"
    batch: str = "1"
    cache: str = "dynamic"
    dtype: str = ""  # "": the device's default (float16 on GPUs)

    def command(self, folder: Path) -> list[str]:
        return [
            sys.executable, "-m", "vramtui", "bench", "--models", self.models,
            "--quant", self.quant, "--tokens", self.tokens, "--prompt-tokens", self.prompt,
            "--batch", self.batch, "--cache", self.cache, "--device", "cuda:0",
            "--csv", str(folder / f"{self.name}.csv"),
            "--markdown", str(folder / f"{self.name}.md"), "--force", "-q",
            *(["--dtype", self.dtype] if self.dtype else []),
        ]  # fmt: skip


PARTS: dict[str, list[Sweep]] = {
    "methods": [
        Sweep("methods", "llama-3.2-1b", "none,int8,nf4,fp4,int8-wo,int4-wo,fp8", dtype="bfloat16"),
    ],
    "short": [
        Sweep("short", "opt-1.3b,llama-3.2-1b,opt-6.7b," + SEVEN_B + ",qwen3-30b-a3b"),
    ],
    "long-opt": [Sweep("long-opt", "opt-1.3b", tokens="2000")],
    "long-llama": [Sweep("long-llama", "llama-3.2-1b", tokens="2000")],
    "long-7b": [Sweep("long-7b", SEVEN_B, quant="none,nf4", tokens="2000")],
    "long-moe": [Sweep("long-moe", "qwen3-30b-a3b", quant="none,nf4", tokens="2000")],
    "kv": [
        Sweep("kv-dynamic", "llama-3.2-1b", "nf4", "200", "2000", "8", "dynamic"),
        Sweep("kv-quantized", "llama-3.2-1b", "nf4", "200", "2000", "8", "quantized"),
    ],
}


def run_sweep(sweep: Sweep, folder: Path, deadline: float) -> dict[str, Any]:
    """The sweep, interrupted (SIGINT, as Ctrl+C: finished cells are kept) at the deadline."""
    command = sweep.command(folder)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=max(1.0, deadline - started))
        interrupted = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        interrupted = True
    print(out, flush=True)
    return {
        "sweep": sweep.name,
        "command": command,
        "exit_code": process.returncode,
        "interrupted_at_budget": interrupted,
        "seconds": round(time.monotonic() - started, 1),
        "stderr_tail": err[-3000:],
        "cells": read_cells(folder / f"{sweep.name}.csv"),
    }


def read_cells(path: Path) -> list[dict[str, Any]]:
    """The CSV's rows, numbers as numbers."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text if text != "" else None


def run_parity(folder: Path, deadline: float) -> dict[str, Any]:
    """checkpoint_parity.py with --quant int8, then nf4."""
    runs = []
    for quant in ("int8", "nf4"):
        out = folder / f"parity-{quant}"
        command = [sys.executable, str(Path(__file__).parent / "checkpoint_parity.py"),
                   "--models", "opt-1.3b,pythia-1b", "--quant", quant, "--tokens", "20",
                   "--out", str(out)]  # fmt: skip
        left = deadline - time.monotonic()
        if left < 60:
            runs.append({"quant": quant, "skipped": "past the time budget"})
            continue
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=left)
            runs.append({"quant": quant, "exit_code": done.returncode, "stdout": done.stdout,
                         "stderr_tail": done.stderr[-3000:], "result": str(out)})  # fmt: skip
        except subprocess.TimeoutExpired:
            runs.append({"quant": quant, "skipped": "ran past the time budget"})
        print(runs[-1].get("stdout", runs[-1]), flush=True)
    return {"parity": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "parity"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the part's files")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop the part after this")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    result: dict[str, Any] = {
        "part": args.part,
        "environment": gpu_environment(),
        "quant_packages": package_versions(QUANT_PACKAGES),
        "left_out": LEFT_OUT,
    }
    if args.part == "parity":
        result.update(run_parity(args.out, deadline))
        ok = all(r.get("exit_code") == 0 for r in result["parity"])
    else:
        result["sweeps"] = [run_sweep(s, args.out, deadline) for s in PARTS[args.part]]
        ok = all(s["exit_code"] == 0 for s in result["sweeps"])
    write_json(args.out / f"quant_table-{args.part}.json", result)
    print(f"wrote {args.out / f'quant_table-{args.part}.json'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
