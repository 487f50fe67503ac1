"""Measure what the estimator needs, one fresh engine process per cell.

For every cell (model x prompt/new tokens x attention x batch) it records the
weights, the allocator figures after load, the prefill step (token 0), the
decode steps (allocated, step peak, reserved, KV bytes, downsampled), NVML
process memory, and the peaks. `vramtui/predict/calibration.py` is calibrated from
these files and `benchmarks/estimator_accuracy.py` compares against them.

Usage:
  python benchmarks/calibrate.py --models opt-125m,opt-1.3b --shapes 8+20,8+2000,2000+1 \
      --attn sdpa,eager --batch 1 --out benchmarks/results/calibrate/b1-short.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment_line, gpu_environment, write_json  # noqa: E402

from vramtui.errors import UsageError  # noqa: E402
from vramtui.measure.device_inventory import available  # noqa: E402
from vramtui.measure.recorder import Recorder  # noqa: E402
from vramtui.measure.session import SessionView  # noqa: E402
from vramtui.measure.summary_format import summary as summary_of
from vramtui.runspec import RunSpec, resolve  # noqa: E402


def series(session: SessionView, points: int = 60) -> list[dict[str, Any]]:
    samples = session.token_samples
    if not samples:
        return []
    step = max(1, len(samples) // points)
    picked = samples[:5] + samples[5:-5:step] + samples[-5:] if len(samples) > 10 else samples
    return [
        {
            "token": s.token,
            "allocated": s.allocated,
            "step_peak": s.step_peak,
            "reserved": s.reserved,
            "kv": s.kv_bytes,
        }
        for s in picked
    ]


def cell_record(session: SessionView, seconds: float) -> dict[str, Any]:
    summary = summary_of(session)
    load = next((s for s in session.samples if s.phase == "load"), None)
    first = session.token_samples[0] if session.token_samples else None
    nvml_by_phase: dict[str, int] = {}
    for n, _token, phase in session.nvml_rows():
        if n.process_bytes is not None:
            nvml_by_phase[phase] = max(nvml_by_phase.get(phase, 0), n.process_bytes)
    return {
        "spec": summary["spec"],
        "status": summary["status"],
        "failure": summary["failure"],
        "params": summary["params"],
        "weights_bytes": summary["weights_bytes"],
        "after_load": {
            "allocated": load.allocated,
            "reserved": load.reserved,
            "step_peak": load.step_peak,
        }
        if load
        else None,
        "prefill_step": {
            "allocated": first.allocated,
            "step_peak": first.step_peak,
            "reserved": first.reserved,
            "kv": first.kv_bytes,
        }
        if first
        else None,
        "peak_allocated_bytes": summary["peak_allocated_bytes"],
        "peak_reserved_bytes": summary["peak_reserved_bytes"],
        "peak_nvml_process_bytes": summary["peak_nvml_process_bytes"],
        "nvml_process_peak_by_phase": nvml_by_phase,
        # pid: the engine's own NVML figure; baseline: device used minus before (not
        # valid when cells run side by side, which calibrate_parallel.sh does)
        "nvml_process_source": session.environment.nvml_process_source,
        "notices": list(session.notices),
        "peaks": summary["peaks"],
        "kv_cache_bytes_final": summary["kv_cache_bytes_final"],
        "tokens_generated": summary["tokens_generated"],
        "tokens_per_s": summary["tokens_per_s"],
        "series": series(session),
        "wall_s": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="opt-125m,opt-350m,opt-1.3b,opt-2.7b,opt-6.7b")
    parser.add_argument("--shapes", default="8+20,8+2000,2000+1", help="prompt+new tokens")
    parser.add_argument("--attn", default="sdpa,eager")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = gpu_environment()
    print(environment_line(env), flush=True)
    cells = []
    for batch in [int(b) for b in args.batch.split(",")]:
        for shape in args.shapes.split(","):
            prompt, new = (int(x) for x in shape.split("+"))
            for attn in args.attn.split(","):
                for model in args.models.split(","):
                    cells.append(
                        RunSpec(
                            model=model,
                            tokens=new,
                            prompt_tokens=prompt,
                            attn=attn,
                            batch=batch,
                            device=args.device,
                        )
                    )
    devices = available()
    try:  # every cell checked before the first one runs
        runs = [resolve(spec, devices) for spec in cells]
    except UsageError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    records = []
    for i, run in enumerate(runs, 1):
        spec = run.spec
        t = time.monotonic()
        session = Recorder.for_run(run).run().snapshot()
        record = cell_record(session, time.monotonic() - t)
        records.append(record)
        print(
            f"[{i}/{len(cells)}] {spec.model} p{spec.prompt_tokens}+{spec.tokens} {spec.attn} "
            f"b{spec.batch}: {record['status']} peak_alloc={record['peak_allocated_bytes']} "
            f"nvml={record['peak_nvml_process_bytes']} {record['wall_s']}s",
            flush=True,
        )
        write_json(args.out, {"environment": env, "cells": records})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
