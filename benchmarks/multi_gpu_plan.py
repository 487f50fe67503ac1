"""Runs over several GPUs, predicted: what each H200 would hold for opt-66b over two and opt-175b
over four, by `vramtui estimate` (placement by transformers' own device map on the meta
device). Nothing here is measured: the machines with several GPUs were not lent.

    python benchmarks/multi_gpu_plan.py --out benchmarks/results/multi_gpu_plan
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import write_json  # benchmarks/ is sys.path[0] for a script

H200 = "139GiB"  # what torch reports free on an empty H200 (143,771 MiB total)
CELLS = (
    [("opt-66b", "balanced", 2, tokens, batch) for tokens in (20, 2000) for batch in (1, 8)]
    + [("opt-66b", "balanced_low_0", 2, tokens, batch) for tokens in (20, 2000) for batch in (1, 8)]
    + [("opt-175b", "auto", 4, tokens, 1) for tokens in (20, 2000)]
)


def predict(model: str, device_map: str, gpus: int, tokens: int, batch: int) -> dict[str, Any]:
    memory = ",".join(f"{i}={H200}" for i in range(gpus))
    args = ["--model", model, "--device-map", device_map, "--max-memory", memory,
            "--tokens", str(tokens), "--batch", str(batch), "--json"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "vramtui", "estimate", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"estimate {' '.join(args)}: {done.stderr.strip()}")
    data = json.loads(done.stdout)
    data["command"] = "vramtui estimate " + " ".join(args[:-1])
    return data


def row(cell: tuple[str, str, int, int, int], data: dict[str, Any]) -> str:
    model, device_map, gpus, tokens, batch = cell
    devices = "; ".join(
        f"{d['device']} layers {d['layers'][0]}–{d['layers'][-1]}: "
        f"{d['weights_bytes'] / 1e9:.1f} GB weights, {d['peak_total_bytes'] / 1e9:.1f} GB total"
        for d in data["devices"]
        if d["layers"]
    )
    return f"| {model} | {device_map} | {gpus} | {tokens} | {batch} | {devices} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = [(cell, predict(*cell)) for cell in CELLS]
    lines = [
        "# Several H200s, predicted (not measured)",
        "",
        "`vramtui estimate` with `--max-memory` of 139 GiB per H200; no machine with "
        "several GPUs was lent, so none of this has run. Each device: layers, weights, "
        "predicted peak total (NVML per process).",
        "",
        "| model | device map | GPUs | new tokens | batch | each GPU (predicted) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
        *(row(cell, data) for cell, data in results),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan.md").write_text("\n".join(lines) + "\n")
    write_json(args.out / "plan.json", {"plans": [d for _, d in results]})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
