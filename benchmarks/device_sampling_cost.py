"""What measuring N devices costs: per engine step, per NVML poll, and per token.

A placed model is sampled on every device it uses at every step (the engine's
`DeviceProbes`: each GPU's allocator read and its peak reset; the CPU's RSS where
weights are offloaded), and the parent polls NVML on every GPU it uses (`WatchGroup`).
On one GPU the N devices are cuda:0 N times over: the same calls, on one device's
counters (each call is CPU-side bookkeeping of the caching allocator or one NVML query,
so its cost does not depend on which GPU it names). Measured:

  step      the engine's whole per-step sample (`Emitter.sample`: the run's probe, the
            devices' probes, the event's encoding), N = 0 (one device), 1, 2, 4, 8 GPUs,
            with and without the CPU's RSS probe; and the RSS probe alone, as the
            process is and with 4 GiB more resident;
  nvml      one poll of N GPUs (process and device memory on each), N = 1, 2, 4, 8;
            the poller's share of a core at 200 Hz follows;
  runs      decode tok/s of opt-125m (the fastest decode: the most sensitive to a
            per-step cost), `--device cuda:0` against the same placed by
            `--device-map auto --max-memory 0=100GiB` (sampled as a placed model), two
            interleaved rounds; and opt-13b placed as offload_gpu.sh places it
            (`--max-memory 0=12GiB,cpu=64GiB`: cuda:0 and the CPU), 5 tokens, if time is
            left: what the per-step sampling is of its per-token time.

Usage (a CUDA GPU; under 150 s on an H200):
    python3 benchmarks/device_sampling_cost.py --out DIR
writes DIR/device_sampling_cost.json and DIR/device_sampling_cost.md. Without CUDA it
says so in one line and exits 2, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    environment_line,
    gpu_environment,
    per_call_us,
    run_command,
    write_json,
)

COUNTS = (1, 2, 4, 8)
BUDGET_S = 135.0  # the whole script; the offloaded run is skipped when it would not fit
OFFLOAD_NEEDS_S = 40.0  # opt-13b, 5 tokens: imports, a 26 GB build, ~2 s a token
ONE_GPU = ("--device", "cuda:0")
PLACED_ONE_GPU = ("--device-map", "auto", "--max-memory", "0=100GiB")
OFFLOAD = ("--device-map", "auto", "--max-memory", "0=12GiB,cpu=64GiB")


def cpu_probe_cost(held_bytes: int = 4 * 2**30) -> dict[str, Any]:
    """The CPU's RSS probe (read, then the peak's reset), as it is and with more held."""
    import torch

    from vramtui.measure.engine.probes import CpuProbe

    probe = CpuProbe()
    out: dict[str, Any] = {"peak_resettable": probe._hwm}

    def step() -> None:
        probe.read()
        probe.reset_peak()

    out["read_reset_us"] = per_call_us(step, 500)
    out["rss_bytes"] = probe.read()[0]
    held = torch.ones(held_bytes // 4, dtype=torch.float32)  # resident: ones are written
    out["read_reset_us_held"] = per_call_us(step, 500)
    out["rss_bytes_held"] = probe.read()[0]
    del held
    return out


def step_costs() -> list[dict[str, Any]]:
    """The engine's whole per-step sample for N GPUs (cuda:0 N times), with the CPU or not."""
    from vramtui.measure.engine.engine_run import Emitter
    from vramtui.measure.engine.probes import CpuProbe, CudaProbe, DeviceProbes

    out = []
    for n in (0, *COUNTS):
        for cpu in (False, True):
            if n == 0 and cpu:
                continue
            emitter = Emitter(lambda line: None)
            emitter.probe = CudaProbe(0)
            if n:
                probes = DeviceProbes([])
                probes.probes = {f"cuda:0#{k}": CudaProbe(0) for k in range(n)}
                if cpu:
                    probes.probes["cpu"] = CpuProbe()
                emitter.device_probes = probes
            cost = per_call_us(lambda e=emitter: e.sample(1, "decode", 0))
            out.append({"gpus": n, "cpu": cpu, "step_us": round(cost, 2)})
    return out


def nvml_costs() -> dict[str, Any]:
    """One poll of N GPUs' NVML (cuda:0 N times), this process's own figure on each."""
    from vramtui.measure import nvml

    if not nvml.available():
        return {"unavailable": nvml.unavailable_reason()}
    gpu = nvml.gpus()[0]
    polls = []
    for n in COUNTS:
        group = nvml.WatchGroup()
        for _ in range(n):
            group.add(None, nvml.DeviceWatch(gpu, os.getpid(), None))
        us = per_call_us(group.read, 500)
        polls.append({"gpus": n, "poll_us": round(us, 2), "core_share_at_200hz": us * 200 / 1e6})
    return {"gpu": gpu.name, "polls": polls}


def one_run(model: str, tokens: int, extra: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """`vramtui run` in a fresh process: its decode rate and per-device peaks."""
    with tempfile.TemporaryDirectory() as folder:
        command = run_command(model, tokens, Path(folder), *extra)
        t = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        wall = time.monotonic() - t
        if done.returncode != 0:
            return {"rc": done.returncode, "error": done.stderr.strip()[-400:], "wall_s": wall}
        summary = json.loads((Path(folder) / "run.json").read_text())
    return {
        "rc": 0,
        "wall_s": round(wall, 2),
        "decode_tokens_per_s": summary["decode_tokens_per_s"],
        "tokens": summary["tokens_generated"],
        "devices": [
            {k: d.get(k) for k in ("device", "peak_allocated_bytes", "peak_nvml_process_bytes")}
            for d in summary.get("devices", [])
        ],
    }


def runs(started: float) -> dict[str, Any]:
    """opt-125m on cuda:0, plain and placed, interleaved; then opt-13b offloaded if time is left."""
    rounds = []
    for _ in range(2):
        plain = one_run("opt-125m", 300, ONE_GPU, 45)
        placed = one_run("opt-125m", 300, PLACED_ONE_GPU, 45)
        rounds.append({"device": plain, "placed": placed})
    ratios = [
        r["placed"]["decode_tokens_per_s"] / r["device"]["decode_tokens_per_s"]
        for r in rounds
        if r["placed"].get("rc") == 0 and r["device"].get("rc") == 0
    ]
    out: dict[str, Any] = {
        "opt-125m": rounds,
        "placed_over_device_median": statistics.median(ratios) if ratios else None,
    }
    left = BUDGET_S - (time.monotonic() - started)
    if left > OFFLOAD_NEEDS_S:
        out["opt-13b-offload"] = one_run("opt-13b", 5, OFFLOAD, left - 5)
    else:
        out["opt-13b-offload"] = {"skipped": f"{left:.0f} s left of the budget"}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# What measuring N devices costs",
        "",
        environment_line(result["environment"]),
        "",
        "| engine step: GPUs sampled | + CPU RSS | µs a step |",
        "| --- | --- | --- |",
    ]
    for s in result["step"]:
        lines.append(f"| {s['gpus']} | {'yes' if s['cpu'] else 'no'} | {s['step_us']:.1f} |")
    cpu = result["cpu_probe"]
    lines += [
        "",
        f"CPU RSS probe (read + peak reset): {cpu['read_reset_us']:.1f} µs at an RSS of "
        f"{cpu['rss_bytes'] / 2**30:.2f} GiB, {cpu['read_reset_us_held']:.1f} µs at "
        f"{cpu['rss_bytes_held'] / 2**30:.2f} GiB.",
    ]
    nvml = result.get("nvml", {})
    if "polls" in nvml:
        lines += ["", "| NVML poll: GPUs | µs a poll | one core's share at 200 Hz |",
                  "| --- | --- | --- |"]  # fmt: skip
        lines += [f"| {p['gpus']} | {p['poll_us']:.1f} | {p['core_share_at_200hz']:.1%} |"
                  for p in nvml["polls"]]  # fmt: skip
    else:
        lines += ["", f"NVML: {nvml.get('unavailable')}"]
    lines += _runs_lines(result.get("runs"))
    return "\n".join(lines) + "\n"


def _runs_lines(runs_: dict[str, Any] | None) -> list[str]:
    if not runs_:
        return []
    lines = ["", "| opt-125m, 300 tokens | device cuda:0 tok/s | placed on cuda:0 tok/s |",
             "| --- | --- | --- |"]  # fmt: skip
    for n, r in enumerate(runs_["opt-125m"], start=1):
        rates = [r[k].get("decode_tokens_per_s") or r[k].get("error") for k in ("device", "placed")]
        lines.append(f"| round {n} | {rates[0]} | {rates[1]} |")
    ratio = runs_["placed_over_device_median"]
    lines += ["", f"placed / device, median: {ratio:.3f}" if ratio else "placed / device: –"]
    offload = runs_.get("opt-13b-offload", {})
    if offload.get("decode_tokens_per_s"):
        per_token_us = 1e6 / offload["decode_tokens_per_s"]
        lines.append(f"opt-13b offloaded: {offload['decode_tokens_per_s']:.3f} tok/s "
                     f"({per_token_us / 1e3:.0f} ms a token)")  # fmt: skip
    else:
        lines.append(f"opt-13b offloaded: {offload}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the JSON and md")
    parser.add_argument("--no-runs", action="store_true", help="only the per-step and NVML costs")
    args = parser.parse_args()
    started = time.monotonic()
    import torch

    if not torch.cuda.is_available():
        print("device_sampling_cost: needs a CUDA GPU (torch sees none here)", file=sys.stderr)
        return 2
    torch.zeros(1, device="cuda")
    kept = [torch.empty(1024, 1024, device="cuda") for _ in range(8)]  # some allocator state
    result: dict[str, Any] = {
        "environment": gpu_environment(),
        "step": step_costs(),
        "cpu_probe": cpu_probe_cost(),
        "nvml": nvml_costs(),
    }
    del kept
    if not args.no_runs:
        result["runs"] = runs(started)
    result["wall_s"] = round(time.monotonic() - started, 1)
    write_json(args.out / "device_sampling_cost.json", result)
    (args.out / "device_sampling_cost.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
