"""Whether a cell's figures depend on the engine's virtual address layout.

A forked engine (engine/forkserver.py) reserved 2 MiB less than every spawned run of
opt-350m x 2000 on the H200, with the garbage collector off as well, and its
allocator segments lay in another order of addresses (fork-h200.md). With unified
addressing, CUDA places device memory in the process's own virtual address space,
and the caching allocator picks among free blocks of one size by address. This runs
spawned engines of one cell at once (separate processes, so each one's allocator
figures are its own), each reserving `--hold` MiB of address space (PROT_NONE, no
memory behind it) before anything else at start-up (a sitecustomize), 0 being the
control, and prints each one's peaks: if they move with the hold, the figure
depends on where the addresses fall, which a fork (or any other program) changes.

    python benchmarks/va_layout.py [--model opt-350m] [--tokens 2000]
        [--device cuda:0] [--hold 0,0,64,1024,65536] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.measure.device_inventory import available  # noqa: E402
from vramtui.measure.recorder import Recorder  # noqa: E402
from vramtui.measure.summary_format import summary as summary_of  # noqa: E402
from vramtui.runspec import RunSpec, resolve  # noqa: E402

SITE = """import mmap, os
_mib = int(os.environ.get("VA_HOLD_MIB", "0"))
if _mib:
    _flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    _held = mmap.mmap(-1, _mib << 20, flags=_flags, prot=mmap.PROT_NONE)
"""
PEAKS = ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes")


def one(spec: RunSpec, site: Path, hold: int) -> dict[str, Any]:
    env = {"PYTHONPATH": f"{site}:{ROOT}", "VA_HOLD_MIB": str(hold)}
    session = Recorder.for_run(resolve(spec, available()), extra_env=env).run().snapshot()
    summary = summary_of(session)
    return {"hold_mib": hold, "status": session.status, **{k: summary.get(k) for k in PEAKS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-350m")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--hold", default="0,0,64,1024,65536")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    holds = [int(h) for h in args.hold.split(",")]
    spec = RunSpec(model=args.model, tokens=args.tokens, device=args.device)
    with tempfile.TemporaryDirectory(prefix="vramtui-va-") as tmp:
        site = Path(tmp)
        (site / "sitecustomize.py").write_text(SITE)
        with ThreadPoolExecutor(len(holds)) as pool:
            runs = list(pool.map(lambda hold: one(spec, site, hold), holds))
    print(f"{args.model} x {args.tokens} on {args.device}, spawned engines run at once:")
    for r in runs:
        peaks = ", ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in PEAKS)
        print(f"- {r['hold_mib']} MiB of address space held at start-up: {r['status']}; {peaks}")
    if args.json:
        write_json(args.json, {"args": {**vars(args), "json": str(args.json)}, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
