"""The cap checks of `fit_check.sh` (generation, gN) and `fit_train_check.sh` (fine-tuning,
tN), several at a time on one GPU (*GPU*).

Each cell runs under its allocator cap (`--cap`, torch's per-process memory fraction), so
a cell's runs are its own whatever else runs beside it, as long as the card holds every
running cell's cap and CUDA context: cells start while the caps of those running, each
with 1 GiB for its context, stay within `--budget-gib` (fit's predictions trace on the
CPU meanwhile, unless they were made ahead: results/fit_check/predicted/gen/ and train/
hold fit-N.json and fit-N-at.json made with the scripts' PREDICT_ONLY=1, copied in
first). Every cell's output is the scripts' own, under OUT/fit_check and
OUT/fit_train_check; each cell's start and end go to OUT/cap_lanes.jsonl.

    python3 benchmarks/cap_lanes.py --out DIR [--budget-gib 72] [--lanes 6] g0 g1 t0 t3 ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {"g": ("fit_check.sh", "fit_check"), "t": ("fit_train_check.sh", "fit_train_check")}
# fit's rows made ahead on a CPU (the scripts' PREDICT_ONLY=1), by cell: copied in first,
# so the GPU's call spends no time tracing
PREDICTED = HERE / "results" / "fit_check" / "predicted"
PREDICTED_DIRS = {"g": "gen", "t": "train"}
GIB = 2**30


def caps(script: str) -> list[int]:
    """Each cell's cap in bytes, in the order of the script's CELLS array."""
    text = (HERE / script).read_text()
    block = text[text.index("CELLS=(") : text.index(")\n", text.index("CELLS=("))]
    found = re.findall(r'^\s*"(\d+)GiB ', block, flags=re.M)
    return [int(gib) * GIB for gib in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", help="gN: fit_check.sh cell N; tN: fit_train_check.sh")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-gib", type=float, default=72.0)
    parser.add_argument("--lanes", type=int, default=6)
    args = parser.parse_args()
    deadline = float(os.environ.get("DEADLINE") or time.time() + 3600)
    sized = []
    for cell in args.cells:
        script, folder = SCRIPTS[cell[0]]
        need = caps(script)[int(cell[1:])] + GIB
        sized.append((cell, script, folder, need))
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "cap_lanes.jsonl").open("a")
    waiting, running = sized[:], []
    while waiting or running:
        for item in list(running):
            (cell, _, _, need), proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                row = {"cell": cell, "start": start, "end": time.time(), "rc": proc.returncode}
                log.write(json.dumps(row) + "\n")
                log.flush()
        held = sum(item[0][3] for item in running)
        fits = [w for w in waiting if held + w[3] <= args.budget_gib * GIB]
        if fits and len(running) < args.lanes and time.time() + 90 < deadline:
            cell, script, folder, need = fits[0]
            waiting.remove(fits[0])
            (args.out / folder).mkdir(parents=True, exist_ok=True)
            for made in (PREDICTED / PREDICTED_DIRS[cell[0]]).glob(f"fit-{cell[1:]}*.json"):
                shutil.copy(made, args.out / folder / made.name)
            env = {**os.environ, "OUT": str(args.out / folder)}
            proc = subprocess.Popen(["bash", str(HERE / script), cell[1:]], env=env)
            running.append(((cell, script, folder, need), proc, time.time()))
        elif not running and (waiting and (not fits or time.time() + 90 >= deadline)):
            for cell, *_ in waiting:
                log.write(json.dumps({"cell": cell, "not_run": "out of time"}) + "\n")
            break
        time.sleep(1)


if __name__ == "__main__":
    main()
