"""`--tp 1` through torch's elastic launcher allocates what a plain run allocates.

Two `vramtui run`s of the same model and shape on one device: a plain run (the engine
process, random weights through from_pretrained), then `--tp 1` (the launcher, one
rank, transformers' tp_plan="auto"). Every engine sample (the load sample and each
token's allocated, reserved and step peak) is compared byte for byte, with the
weights, the KV cache and the peaks. Exits 1 if any of those differs. NVML's peak for
the process is reported beside them, not compared: it holds what torch.distributed
and NCCL add outside torch's allocator.

    python benchmarks/tp1_parity.py --config benchmarks/configs/qwen2.5-0.5b.json \\
        --tokens 200 --out $OUT/tp1_parity
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import gpu_environment, write_json  # noqa: E402

FIGURES = (
    "weights_bytes",
    "params",
    "kv_cache_bytes_final",
    "peak_allocated_bytes",
    "peak_reserved_bytes",
    "tokens_generated",
)
SERIES = ("allocated_bytes", "reserved_bytes", "step_peak_bytes", "kv_cache_bytes")


def run(config: str, tokens: int, device: str, folder: Path, *extra: str) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "vramtui",
        "run",
        "--config",
        config,
        "--tokens",
        str(tokens),
        "--device",
        device,
        *extra,
        "--csv",
        str(folder / "run.csv"),
        "--json",
        str(folder / "run.json"),
        "--out",
        str(folder / "sessions"),
        "-q",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    saved: dict[str, Any] = json.loads((folder / "run.json").read_text())
    return saved


def engine_rows(path: Path) -> list[tuple[str, ...]]:
    """(phase, token, series...) of every engine row of the run's own device (rank 0)."""
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "engine"]
    return [
        (r["phase"], r["token"], *(r[s] for s in SERIES))
        for r in rows
        if r.get("rank", "0") in ("", "0")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="benchmarks/configs/qwen2.5-0.5b.json")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plain = run(args.config, args.tokens, args.device, args.out / "plain")
    tp1 = run(args.config, args.tokens, args.device, args.out / "tp1", "--tp", "1")
    figures = {name: {"plain": plain.get(name), "tp1": tp1.get(name)} for name in FIGURES}
    rows_plain = engine_rows(args.out / "plain" / "run.csv")
    rows_tp1 = engine_rows(args.out / "tp1" / "run.csv")
    differing = [i for i, (a, b) in enumerate(zip(rows_plain, rows_tp1, strict=False)) if a != b]
    same = (
        all(f["plain"] == f["tp1"] for f in figures.values())
        and len(rows_plain) == len(rows_tp1)
        and not differing
    )
    result = {
        "what": "--tp 1 through torch.distributed.run against a plain run, same model/shape",
        "config": args.config,
        "tokens": args.tokens,
        "device": args.device,
        "environment": gpu_environment(),
        "figures": figures,
        "engine_rows": {"plain": len(rows_plain), "tp1": len(rows_tp1)},
        "differing_rows": [{"plain": rows_plain[i], "tp1": rows_tp1[i]} for i in differing[:20]],
        "tp_rank0": tp1.get("tensor_parallel", {}).get("ranks", [None])[0],
        # outside torch's allocator (not in same_bytes): the CUDA context, and under the
        # launcher what NCCL and torch.distributed hold
        "peak_nvml_process_bytes": {
            "plain": plain.get("peak_nvml_process_bytes"),
            "tp1": tp1.get("peak_nvml_process_bytes"),
        },
        "same_bytes": same,
    }
    write_json(args.out / "tp1_parity.json", result)
    print(json.dumps({"same_bytes": same, "figures": figures}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
