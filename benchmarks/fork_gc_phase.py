"""When Python's garbage collector runs in spawned and in forked engines,
and whether that is what makes a forked cell's figures differ from a spawned one's.

On the H200 one forked cell (opt-350m x 2000) reserved 2 MiB less than every spawned
run of it (results/fast_start/fork-h200.md). A forked engine inherits the fork
server's collector state, so its collections (which free tensors held in reference
cycles) may fall at other moments of the run. This runs one cell spawned then forked,
`--runs` times each, every engine logging each collection it starts (a sitecustomize
on the engines' PYTHONPATH) with, on a GPU, the allocator's allocated and reserved
bytes at that moment, and prints each run's peaks and the generations of its last
collections (N: as many as a forked engine made after its fork). `--gc off`
disables the collector in every engine: if the figures then agree, collections are
the cause. (On the H200, call M, they did not: results/fast_start/fork-divergence/.)

    python benchmarks/fork_gc_phase.py [--model tiny-opt] [--tokens 100] [--device cpu]
        [--runs 2] [--gc on|off] [--json OUT] [--snapshot DIR]

`--snapshot DIR` (CUDA): each run also writes the allocator's snapshot at its peak
(the engine's --snapshot, its history raised to `--entries` actions) to DIR, and the
first action where the first spawned and the first forked run's histories part
(by action and size, not address) is printed with the Python frames around it. A
history as long as `--entries` filled its ring: the start of the run is not in it.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.measure.device_inventory import available  # noqa: E402
from vramtui.measure.engine.engine_process import Launch  # noqa: E402
from vramtui.measure.engine.forkserver import ForkServer  # noqa: E402
from vramtui.measure.recorder import Recorder  # noqa: E402
from vramtui.measure.summary_format import summary as summary_of  # noqa: E402
from vramtui.runspec import RunSpec, resolve  # noqa: E402

SITE = """import gc, os, sys
_dir = os.environ.get("GC_LOG_DIR")
if os.environ.get("GC_OFF") == "1":
    gc.disable()
if _dir:
    def _log(phase, info):
        if phase != "start":
            return
        torch = sys.modules.get("torch")
        mem = ""
        if torch is not None and torch.cuda.is_initialized():  # never in the fork server
            mem = f" {torch.cuda.memory_allocated()} {torch.cuda.memory_reserved()}"
        with open(os.path.join(_dir, f"{os.getpid()}.log"), "a") as f:
            f.write(f"{info['generation']}{mem}\\n")
    gc.callbacks.append(_log)
_entries = os.environ.get("SNAPSHOT_ENTRIES")
if _entries:  # the engine's --snapshot history, longer: ENTRIES set as its module loads
    import importlib.abc, importlib.util
    class _Longer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "vramtui.measure.engine.snapshot":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            load = spec.loader.exec_module
            def exec_module(module):
                load(module)
                module.ENTRIES = int(_entries)
            spec.loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, _Longer())
"""
PEAKS = ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes")


def spec_of(args: argparse.Namespace) -> RunSpec:
    if args.model == "tiny-opt":
        config = ROOT / "tests" / "fixtures" / "tiny-opt.json"
        return RunSpec(model="tiny-opt", source="config", path=str(config), tokens=args.tokens,
                       device=args.device)  # fmt: skip
    return RunSpec(model=args.model, tokens=args.tokens, device=args.device)


def engines(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Each run: how its engine started, its peaks and its collections."""
    env = {"PYTHONPATH": f"{work / 'site'}:{ROOT}", "GC_LOG_DIR": str(work / "logs")}
    if args.gc == "off":
        env["GC_OFF"] = "1"
    if args.snapshot is not None:
        env["SNAPSHOT_ENTRIES"] = str(args.entries)
    spec = spec_of(args)

    def run(name: str) -> Any:
        if args.snapshot is None:
            return resolve(spec, available())
        return resolve(replace(spec, snapshot=str(args.snapshot / f"{name}.pickle")), available())

    sessions = [
        Recorder.for_run(run(f"spawned-{k}"), extra_env=env).run().snapshot()
        for k in range(args.runs)
    ]
    server = ForkServer(Launch.for_spec(spec, env))
    try:
        for k in range(args.runs):
            forked = Recorder.for_run(
                run(f"forked-{k}"), extra_env=env, make_engine=server.make_engine
            )
            sessions.append(forked.run().snapshot())
    finally:
        server.close()
    out = []
    for session in sessions:
        summary, pid = summary_of(session), session.environment.engine_pid
        path = work / "logs" / f"{pid}.log"  # none when the engine made no collection
        log = path.read_text().splitlines() if path.exists() else []
        out.append({"engine": session.environment.engine_start, "status": session.status,
                    **{k: summary.get(k) for k in PEAKS}, "collections": log})  # fmt: skip
    return out


def trace(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        snap = pickle.load(f)
    return [entry for device in snap["device_traces"] for entry in device]


def where(entry: dict[str, Any]) -> str:
    frames = [f"{Path(f['filename']).name}:{f['line']} {f['name']}" for f in entry["frames"]]
    return " < ".join(frames[:4])


def divergence(spawned: Path, forked: Path, entries: int, context: int = 6) -> str:
    """The two histories side by side from a few actions before they part."""
    a, b = trace(spawned), trace(forked)
    lines = [f"history: spawned {len(a)} actions, forked {len(b)}"]
    if entries in (len(a), len(b)):
        lines.append(f"  (a ring of {entries} filled: the start of the run is not in it)")
    for name, t in (("spawned", a), ("forked", b)):
        kinds: dict[str, int] = {}
        for e in t:
            kinds[e["action"]] = kinds.get(e["action"], 0) + 1
        lines.append(f"  {name}: {kinds}")
    key = [(e["action"], e["size"]) for e in a], [(e["action"], e["size"]) for e in b]
    first = next((i for i, (x, y) in enumerate(zip(*key, strict=False)) if x != y), None)
    if first is None:
        return "\n".join([*lines, "  the same actions and sizes throughout"])
    lines.append(f"  first difference at action {first}:")
    for i in range(max(0, first - context), first + context):
        for name, t in (("spawned", a), ("forked", b)):
            if i < len(t):
                e = t[i]
                lines.append(f"  {i} {name:7} {e['action']:15} {e['size']:>11} {where(e)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-opt")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--gc", choices=("on", "off"), default="on")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--snapshot", type=Path, default=None)
    parser.add_argument("--entries", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vramtui-gc-") as tmp:
        return report(args, Path(tmp))


def report(args: argparse.Namespace, work: Path) -> int:
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITE)
    (work / "logs").mkdir()
    if args.snapshot is not None:
        args.snapshot.mkdir(parents=True, exist_ok=True)
    runs = engines(args, work)
    n = min(len(r["collections"]) for r in runs if r["engine"] != "cold")
    print(
        f"{args.model} on {args.device}, {args.tokens} new tokens, collector {args.gc}; "
        f"the last {n} collections of each engine (a forked one's since its fork):\n"
    )
    for r in runs:
        gens = " ".join(line.split()[0] for line in r["collections"][len(r["collections"]) - n :])
        peaks = ", ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in PEAKS)
        print(f"- {r['engine']} ({len(r['collections'])} in all; peaks {peaks}): `{gens}`")
    if args.snapshot is not None:
        paths = (args.snapshot / "spawned-0.pickle", args.snapshot / "forked-0.pickle")
        print(divergence(*paths, args.entries))
    if args.json:
        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
