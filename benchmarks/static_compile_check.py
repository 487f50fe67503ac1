"""The compiled-step model (predict/compiled.py) against the runs it was read from.

Reads benchmarks/results/static-cache/static_compile_diagnosis-history-h200.jsonl (one line a
process of static_compile_diagnosis.py, with whether inductor's cache was cold or
warm) and prints, per run, measured vs estimated peak allocated, peak reserved and
the private pool. These runs are where the model's structure was read (their
memory history): they are not held out. The held-out cells are bench CSVs scored by
benchmarks/traced_accuracy.py.

    python benchmarks/static_compile_check.py [JSONL]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramtui.predict.estimator import estimate_run  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

DEFAULT = ROOT / "benchmarks/results/static-cache/static_compile_diagnosis-history-h200.jsonl"
GPU = DeviceList((DeviceChoice("cuda:0", "NVIDIA H200", 150109880320, 150109880320),), True)


def row(run: dict[str, Any]) -> str:
    prompt, batch = run.get("prompt", 8), run.get("batch", 1)
    spec = RunSpec(model=run["model"], tokens=run["tokens"], prompt_tokens=prompt, batch=batch,
                   device="cuda:0", dtype=run.get("dtype", "float16"), cache="static")  # fmt: skip
    compile = "cached" if run["inductor_cache"] == "warm" else "first"
    est = estimate_run(resolve(spec, GPU, environ={}), compile=compile)
    assert est is not None
    pool = run["pools"].get("(0, 1)", {}).get("total", 0)
    most = est.graph_pool_bytes + est.required_bytes - est.peak_total_bytes

    def err(predicted: int, measured: int) -> str:
        return f"{(predicted - measured) / measured * 100:+.3f} %"

    return (
        f"| {run['model']} | {prompt} + {run['tokens']} | {batch} | {compile} "
        f"| {run['peak_alloc']:,} "
        f"| {err(est.peak_allocated_bytes, run['peak_alloc'])} | {run['peak_reserved']:,} "
        f"| {err(est.peak_reserved_bytes, run['peak_reserved'])} | {pool / 2**20:g} MiB "
        f"| {est.graph_pool_bytes / 2**20:g} MiB (at most {most / 2**20:g} MiB) |"
    )


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    print("| model | prompt + new | batch | compile | peak allocated | error | peak reserved "
          "| error | pool measured | pool estimated |")  # fmt: skip
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for line in path.read_text().splitlines():
        print(row(json.loads(line)))
