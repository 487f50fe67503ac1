"""`vramtui fit` gives the same rows as an earlier commit: a speed-up must not move an
answer. Each flag set below runs as a fresh `python -m vramtui fit ... --json` process
with an empty trace cache, once on this checkout's code and once on `--base`'s (a git
archive export), and the two JSON outputs are compared byte for byte.

The default flag sets name one model (--model) or a few (a --filter matching at most
commands/fit.py's EXACT_ROWS): the exact path, every replay step by step. Over more
models the replays near the line are strided (within kv_replay.strided_bound), so
`--catalogue` sets are the same only where the compared commits both stride or both
do not; benchmarks/fit_strided_rows.py holds the strided answers to the exact ones.

    python benchmarks/fit_same_rows.py --base main
    python benchmarks/fit_same_rows.py --base HEAD~3 --flags "--gpu t4 --quant nf4"
    python benchmarks/fit_same_rows.py --base HEAD~1 --catalogue

Exit 0 when every flag set gives the same bytes, 1 when one does not (its first
differing row is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO  # noqa: E402

FLAG_SETS = [
    "--gpu rtx-4090 --quant nf4 --model qwen2.5-32b",
    "--gpu rtx-4090 --quant nf4,int8 --model qwen3-32b",
    "--gpu rtx-4090 --quant none,int8,nf4 --model llama-3.1-8b",
    "--gpu t4 --quant none,int8,nf4 --model qwen3-8b",
    "--gpu h100 --quant nf4,fp4 --batch 4 --model qwen2.5-72b",
    "--gpu l4 --quant nf4 --double-quant --context 4096 --model gemma-2-9b",
    "--gpu a100-40gb --quant none,nf4 --tokens 500 --batch 2 --filter qwen3-3",
    "--memory 12GiB --quant nf4,int8 --filter llama-3.1",
]
CATALOGUE_SETS = [
    "--gpu rtx-4090 --quant none,int8,nf4",
    "--gpu t4 --quant none,int8,nf4",
    "--gpu h100 --quant nf4,fp4 --batch 4",
    "--gpu rtx-3090 --quant int8-wo,fp8,int4-wo",
    "--gpu l4 --quant nf4 --double-quant --context 4096",
    "--gpu a100-40gb --quant none,nf4 --tokens 500 --batch 2",
    "--memory 12GiB --quant nf4,int8",
]


def fit_json(code: Path, flags: str) -> str:
    """What `vramtui fit FLAGS --json` prints with `code`'s package, no trace cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONPATH": str(code)}
        done = subprocess.run(
            [sys.executable, "-m", "vramtui", "fit", *shlex.split(flags), "--json"],
            env=env, capture_output=True, text=True, check=False, cwd=code,
        )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"vramtui fit {flags} ({code}): {done.stderr.strip()}")
    return done.stdout


def first_difference(ours: str, theirs: str) -> str:
    rows, base = json.loads(ours), json.loads(theirs)
    if len(rows) != len(base):
        return f"{len(rows)} rows against {len(base)}"
    for row, old in zip(rows, base, strict=True):
        if row != old:
            keys = [k for k in row if row.get(k) != old.get(k)]
            return f"{row.get('model')} {row.get('quant')}: " + ", ".join(
                f"{k} {old.get(k)!r} -> {row.get(k)!r}" for k in keys
            )
    return "the same rows, other bytes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--flags", action="append", help="a flag set (default: a built-in list)")
    parser.add_argument("--catalogue", action="store_true", help="the built-in flag sets over "
                        "the whole catalogue instead (strided near the line)")  # fmt: skip
    args = parser.parse_args()
    same = True
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(
            ["git", "archive", args.base, "vramtui"], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", base], input=archive.stdout, check=True)
        for flags in args.flags or (CATALOGUE_SETS if args.catalogue else FLAG_SETS):
            ours, theirs = fit_json(REPO, flags), fit_json(Path(base), flags)
            if ours == theirs:
                print(f"same: {flags} ({len(json.loads(ours))} rows)")
            else:
                same = False
                print(f"DIFFERENT: {flags}: {first_difference(ours, theirs)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
