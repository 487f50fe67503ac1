"""When Python's garbage collector runs in spawned and in forked engines (issue 16).

On the H200 one forked cell reserved 2 MiB less than every spawned run of it
(results/fast_start/fork-h200.md). A forked engine inherits the fork server's
collector counts, so its collections (which free tensors held in reference
cycles) may fall at other moments of the run than a spawned engine's. This runs
the tiny test model on the CPU twice spawned and twice forked, each engine
logging every collection it starts (a sitecustomize on the engines' PYTHONPATH),
and prints the generations of the collections in the run: the last N of each
engine, N being what a forked engine made after its fork.

    python benchmarks/fork_gc_phase.py [--tokens 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramtui.measure.engine.forkserver import ForkServer  # noqa: E402
from vramtui.measure.engine.process import Launch  # noqa: E402
from vramtui.measure.recorder import Recorder  # noqa: E402
from vramtui.spec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

SITE = """import gc, os
_dir = os.environ.get("GC_LOG_DIR")
if _dir:
    def _log(phase, info):
        if phase == "start":
            with open(os.path.join(_dir, f"{os.getpid()}.log"), "a") as f:
                f.write(f"{info['generation']}\\n")
    gc.callbacks.append(_log)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vramtui-gc-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITE)
    (work / "logs").mkdir()
    env = {"PYTHONPATH": f"{work / 'site'}:{ROOT}", "GC_LOG_DIR": str(work / "logs")}
    config = ROOT / "tests" / "fixtures" / "tiny-opt.json"
    spec = RunSpec(model="tiny-opt", source="config", path=str(config), tokens=args.tokens,
                   device="cpu")  # fmt: skip
    run = resolve(spec, DeviceList((DeviceChoice("cpu", "CPU"),)))
    engines: list[tuple[str, int]] = []
    for k in (1, 2):
        session = Recorder(run, extra_env=env, use_nvml=False).run()
        engines.append((f"spawned {k}", session.environment["engine_pid"]))
    server = ForkServer(Launch.for_spec(spec, env))
    for k in (1, 2):
        session = Recorder(run, extra_env=env, use_nvml=False, make_engine=server.make_engine).run()
        engines.append((f"forked {k}", session.environment["engine_pid"]))
    server.close()
    logs = {name: (work / "logs" / f"{pid}.log").read_text().split() for name, pid in engines}
    n = min(len(log) for name, log in logs.items() if name.startswith("forked"))
    print(
        f"tiny-opt on the CPU, {args.tokens} new tokens; the generations of the last {n} "
        "collections of each engine (the forked ones made no more after their fork):\n"
    )
    for name, log in logs.items():
        print(f"- {name} ({len(log)} in all): `{' '.join(log[-n:])}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
