"""Fast starts on a GPU, in one call: a spare engine's first token, and a sweep that
overlaps start-up with work. Every figure is compared with a cold engine's, to the byte.

1. CUDA facts behind the design, in a fresh Python: the time of `import torch`,
   of `torch.cuda.is_available()` and of creating the context, and whether NVML
   lists the process after each (a spare must hold no context).
2. `--model` (opt-1.3b), 20 tokens: Run -> first decode token with a cold engine
   and with a spare (its imports done before Run), alternately, `--rounds` times
   each. Every peak (allocated, reserved, step peak, NVML process) of every run is
   compared to the first cold run's; the spare's PID must be absent from NVML's
   process list while it waits.
3. `vramtui bench --models MODELS --tokens 20,2000` as whole commands: first
   `--no-overlap` (each engine started cold after the previous one ended), then
   the default (the next cell's engine imports while a cell runs); wall time of
   each, and every cell's peaks compared to the byte.

Results are written after each stage, so a call cut short keeps what it measured.
Usage: python benchmarks/fast_start.py --out DIR [--models opt-125m,opt-350m,opt-1.3b]
(a dry run on the CPU: --device cpu --model opt-125m --models opt-125m --tokens 2,4 --rounds 1)
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vramtui.measure.summary_format import summary as summary_of

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment_line, gpu_environment, write_json  # noqa: E402

PROBE = """
import json, os, sys, time
t0 = time.monotonic()
import torch
t1 = time.monotonic()
ok = torch.cuda.is_available()
t2 = time.monotonic()
print(json.dumps({"pid": os.getpid(), "import_torch_s": t1 - t0, "is_available_s": t2 - t1}))
sys.stdout.flush(); sys.stdin.readline()
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
t3 = time.monotonic()
print(json.dumps({"context_s": t3 - t2})); sys.stdout.flush(); sys.stdin.readline()
"""
PEAKS = ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes")
CELL_FIGURES = (*PEAKS, "weights_bytes", "kv_cache_bytes_final", "tokens_generated")


def nvml_pids() -> set[int] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except Exception:  # no NVML: the check is reported as not made
        return None


def in_nvml(pid: int) -> bool | None:
    pids = nvml_pids()
    return None if pids is None else pid in pids


def cuda_facts() -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    facts = json.loads(proc.stdout.readline())
    facts["in_nvml_after_is_available"] = in_nvml(facts["pid"])
    proc.stdin.write("\n")
    proc.stdin.flush()
    facts.update(json.loads(proc.stdout.readline()))
    facts["in_nvml_after_context"] = in_nvml(facts["pid"])
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=60)
    return facts


def one_run(model: str, device: str, spare: bool) -> dict[str, Any]:
    from vramtui.measure.device_inventory import available
    from vramtui.measure.engine.engine_process import Launch
    from vramtui.measure.engine.spare import SparePool
    from vramtui.measure.recorder import Recorder
    from vramtui.runspec import RunSpec, resolve

    spec = RunSpec(model=model, tokens=20, device=device)
    pool = SparePool() if spare else None
    waiting_in_nvml = None
    if pool is not None:
        engine = pool.prepare(Launch.for_spec(spec))
        assert engine is not None and engine.wait_ready(180), "the spare never got ready"
        waiting_in_nvml = in_nvml(engine.pid or -1)
    run = resolve(spec, available())  # the form's work, before Run
    summary = summary_of(Recorder.for_run(run, spares=pool).run().snapshot())
    if pool is not None:
        pool.close()
    step = summary["peaks"].get("step_peak") or {}
    return {
        "engine": summary["environment"].get("engine_start"),
        "status": summary["status"],
        "spare_in_nvml_while_waiting": waiting_in_nvml,
        "startup": (summary["timings"] or {}).get("startup"),
        "peaks": {**{k: summary[k] for k in PEAKS}, "step_peak": step.get("value")},
    }


def first_token(model: str, device: str, rounds: int) -> dict[str, Any]:
    runs = []
    for _ in range(rounds):
        for spare in (False, True):
            runs.append(one_run(model, device, spare))
            print(f"  {runs[-1]['engine']}: {runs[-1]['startup']}", flush=True)
    reference = runs[0]["peaks"]
    by = {e: [r for r in runs if r["engine"] == e] for e in ("cold", "warm spare")}
    return {
        "model": model,
        "tokens": 20,
        "runs": runs,
        "peaks_identical": all(r["peaks"] == reference for r in runs),
        "first_decode_token_s": {
            e: [r["startup"]["first_decode_token_s"] for r in rs] for e, rs in by.items()
        },
    }


def bench(args: argparse.Namespace, overlap: bool) -> dict[str, Any]:
    path = args.out / f"bench-{'overlap' if overlap else 'cold'}.csv"
    cmd = [sys.executable, "-m", "vramtui", "bench", "--models", args.models]
    cmd += ["--tokens", args.tokens, "--device", args.device, "--csv", str(path), "--force", "-q"]
    cmd += [] if overlap else ["--no-overlap"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {
        "command": " ".join(["vramtui", *cmd[3:]]),
        "exit_code": done.returncode,
        "wall_s": round(wall, 2),
        "cells": [{k: r[k] for k in ("model", "tokens", *CELL_FIGURES)} for r in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="opt-1.3b")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="opt-125m,opt-350m,opt-1.3b")
    parser.add_argument("--tokens", default="20,2000", help="the sweep's token budgets")
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"fast_start-{'h200' if args.device.startswith('cuda') else 'cpu'}.json"
    report: dict[str, Any] = {"environment": gpu_environment()}
    print(environment_line(report["environment"]), flush=True)
    if args.device.startswith("cuda"):
        report["cuda_facts"] = cuda_facts()
        print("cuda facts", report["cuda_facts"], flush=True)
        write_json(out, report)
    report["first_token"] = first_token(args.model, args.device, args.rounds)
    write_json(out, report)
    sweeps = report["sweep"] = {"models": args.models, "tokens": args.tokens}
    for overlap in (False, True):
        sweeps["overlap" if overlap else "cold"] = bench(args, overlap)
        print(sweeps, flush=True)
        write_json(out, report)
    cold, warm = sweeps["cold"], sweeps["overlap"]
    sweeps["wall_ratio"] = round(warm["wall_s"] / cold["wall_s"], 3)
    sweeps["cells_identical"] = cold["cells"] == warm["cells"]
    write_json(out, report)
    ft = report["first_token"]
    print(f"first decode token: {ft['first_decode_token_s']}; identical {ft['peaks_identical']}")
    print(
        f"sweep: cold {cold['wall_s']} s, overlapped {warm['wall_s']} s "
        f"(ratio {sweeps['wall_ratio']}); cells identical {sweeps['cells_identical']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
