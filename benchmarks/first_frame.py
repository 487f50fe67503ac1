"""How long `vramtui` takes from launch to its first frame (the start screen drawn).

Each round starts a fresh Python process that runs the app's own command path
(`vramtui.cli.main` with the given flags: flag checks, NVML, resolve, Textual),
headless, and ends it once the first frame has been drawn; the parent times the
process from its start to the line it prints at that frame. Rounds are
sequential; the median and range are reported with the machine.

    python benchmarks/first_frame.py --rounds 10 --out benchmarks/results/first_frame-cpu-dev.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from vramtui.measure.device_inventory import cpu_name  # noqa: E402

CHILD = r"""
import sys, time
import vramtui.tui.app as tui_app

class FirstFrame(tui_app.VramApp):
    def on_mount(self) -> None:
        super().on_mount()
        self.call_after_refresh(self._drawn)

    def _drawn(self) -> None:
        self.call_after_refresh(lambda: (print("FIRST_FRAME", flush=True), self.exit(0)))

    def run(self, *args, **kwargs):
        return super().run(*args, headless=True, **kwargs)

tui_app.VramApp = FirstFrame
from vramtui.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def one_round(flags: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("FIRST_FRAME"):
            elapsed = time.perf_counter() - started
            proc.wait(timeout=30)
            return elapsed
    raise RuntimeError(f"no first frame: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--flags", default="--model opt-125m --tokens 200", help="the app's flags")
    parser.add_argument("--out", type=Path, required=True, help="the result's JSON file")
    args = parser.parse_args()
    flags = args.flags.split()
    one_round(flags)  # warm the file cache; not counted
    seconds = [one_round(flags) for _ in range(args.rounds)]
    result = {
        "what": f"launch to first frame of `vramtui {args.flags}` (headless), fresh process",
        "seconds": [round(s, 3) for s in seconds],
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    write_json(args.out, result)
    print(
        f"first frame: median {result['median_s']} s ({result['min_s']}-{result['max_s']}), "
        f"{args.rounds} rounds, {result['cpu']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
