"""Long app sessions stay small: 100 runs of 2000 tokens in one app (goal: under +50 MB).

No GPU and no engine: each run is a synthetic opt-1.3b run of 2000 tokens with
NVML readings at 200 Hz (what the Recorder takes on a GPU), replayed into the
real app, headless, which shows it live, saves it (CSV + JSON) and shows its
summary; then `r` (run again) goes back to the start screen and the next run
begins. The process's RSS is read after every run (after a garbage collection).
Growth is counted from the end of run 2 (imports, caches and the first screens
warm) to the end of the last run.

    python benchmarks/long_session.py --out benchmarks/results/long_session-cpu-dev.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from vramtui import __version__  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

GOAL_BYTES = 50 * 10**6
DEVICES = DeviceList((DeviceChoice("cuda:0", "NVIDIA H100 80GB HBM3", 85 * 10**9, 84 * 10**9),))


async def measure(runs: int, tokens: int, folder: Path) -> list[int]:
    from vramtui.testing.replay import ReplayRecorder
    from vramtui.testing.synthetic import synthetic_run
    from vramtui.tui.app import VramApp
    from vramtui.tui.screens.summary_screen import SummaryScreen

    items = synthetic_run("opt-1.3b", tokens, nvml_hz=200.0)
    spec = RunSpec(model="opt-1.3b", tokens=tokens, device="cuda:0")
    app = VramApp(
        spec,
        out_dir=folder,
        make_recorder=lambda run: ReplayRecorder(run, items),
        list_devices=lambda: DEVICES,
    )
    me = psutil.Process()
    rss: list[int] = []
    async with app.run_test(size=(120, 40)) as pilot:
        for i in range(runs):
            app.begin(resolve(spec, DEVICES))
            while not (app.current and app.current.ended and isinstance(app.screen, SummaryScreen)):
                await pilot.pause(0.01)
            app.action_run_again()
            await pilot.pause()
            gc.collect()
            rss.append(me.memory_info().rss)
            print(f"run {i + 1}: RSS {rss[-1] / 1e6:.1f} MB", file=sys.stderr)
    return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True, help="the result's JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        rss = asyncio.run(measure(args.runs, args.tokens, Path(tmp)))
        saved = len(list(Path(tmp).glob("*.json")))
    growth = rss[-1] - rss[1]
    result: dict[str, Any] = {
        "what": f"{args.runs} runs of {args.tokens} tokens (synthetic opt-1.3b, NVML at 200 Hz) "
        "in one headless app session",
        "rss_bytes_after_each_run": rss,
        "growth_bytes_run2_to_last": growth,
        "goal_bytes": GOAL_BYTES,
        "met": growth < GOAL_BYTES,
        "sessions_saved": saved,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version},
        "vramtui": __version__,
        "platform": platform.platform(),
    }
    write_json(args.out, result)
    print(
        f"{args.runs} runs: RSS {rss[0] / 1e6:.1f} MB after run 1, {rss[1] / 1e6:.1f} after run 2, "
        f"{rss[-1] / 1e6:.1f} after the last: +{growth / 1e6:.1f} MB (goal < "
        f"{GOAL_BYTES / 1e6:.0f} MB), {saved} sessions saved"
    )
    return 0 if growth < GOAL_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
