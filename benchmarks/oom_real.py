"""A real out-of-memory on the GPU, mid-decode.

Picks a batch for opt-6.7b whose KV cache outgrows the card's free memory
around token --target, runs `vramtui run` headless, and checks: exit code 3,
the JSON says failed/oom with phase, token, bytes requested and held, the CSV
holds every token up to the failure, and afterwards NVML lists no process of
ours on the GPU.

Usage: python benchmarks/oom_real.py --out benchmarks/results/oom_real/oom_real.json
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment_line, gpu_environment, run_command, write_json  # noqa: E402

from vramtui.measure import nvml  # noqa: E402
from vramtui.models.opt import opt_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="opt-6.7b")
    parser.add_argument("--target", type=int, default=800, help="token at which to run out")
    parser.add_argument("--timeout", type=float, default=600.0, help="then Ctrl+C the run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = gpu_environment()
    gpu = nvml.gpus()[0]
    info = opt_model(args.model)
    headroom = gpu.free - info.weights_bytes("float16") - 2 * 1024**3  # context, logits
    batch = max(1, int(headroom / (info.kv_bytes_per_token("float16") * (args.target + 8))))
    tmp = Path(tempfile.mkdtemp())
    cmd = run_command(args.model, 2000, tmp, "--batch", str(batch))
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=args.timeout)
        timed_out = False
    except subprocess.TimeoutExpired:  # Ctrl+C: vramtui saves what it measured, exits 130
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        timed_out = True
    wall = time.monotonic() - t
    time.sleep(1.0)
    ours = [p for p in _compute_pids(gpu.index)]
    summary = json.loads((tmp / "run.json").read_text())
    with open(tmp / "run.csv") as f:
        rows = list(csv.DictReader(f))
    engine = [r for r in rows if r["source"] == "engine"]
    # one row per token (token 0's says prefill, the rest decode)
    decode = [int(r["token"]) for r in engine if r["token"]]
    # the failure's high-water sample
    unindexed = [r for r in engine if not r["token"] and r["phase"] == "decode"]
    failure = summary["failure"] or {}
    result = {
        "command": "vramtui " + " ".join(cmd[3:]),
        "environment": env,
        "batch": batch,
        "exit_code": proc.returncode,
        "timed_out_after_s": args.timeout if timed_out else None,
        "stderr_last_line": stderr.strip().splitlines()[-1] if stderr.strip() else "",
        "status": summary["status"],
        "failure": failure,
        "tokens_generated": summary["tokens_generated"],
        "csv_decode_tokens_contiguous": decode == list(range(len(decode))),
        "csv_decode_rows": len(decode),
        "csv_rows_without_token": unindexed,
        "peak_allocated_bytes": summary["peak_allocated_bytes"],
        "peak_nvml_process_bytes": summary["peak_nvml_process_bytes"],
        "device_total_bytes": gpu.total,
        "gpu_processes_after_exit": ours,
        "wall_s": round(wall, 1),
    }
    write_json(args.out, result)
    print(environment_line(env))
    for key in (
        "batch",
        "timed_out_after_s",
        "exit_code",
        "status",
        "failure",
        "tokens_generated",
        "csv_decode_rows",
        "csv_decode_tokens_contiguous",
        "gpu_processes_after_exit",
    ):
        print(f"{key}: {result[key]}")
    return 0


def _compute_pids(index: int) -> list[int]:
    import pynvml

    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    return [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]


if __name__ == "__main__":
    raise SystemExit(main())
