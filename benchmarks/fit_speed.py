"""`vramtui fit` answers the whole catalogue fast: every model, each precision asked, one
workload, for one card, timed as the command a user types.

1. The whole command in a fresh process (`python -m vramtui fit --gpu rtx-4090 --json
   --quant ...`), its wall time from start to exit, after one warm-up run, with an empty
   trace cache (no model's code traced before: every non-OPT row approximate, as on a
   machine that never ran `vramtui estimate`).
2. The search alone, in this process: `commands.fit.plan` of the same flags, the
   planner's caches cleared before each run: wall and CPU seconds, and the CPU seconds
   of those spent replaying the cache's segments (predict/kv_replay.py).

Goal: under 2 s for the whole catalogue x {fp16, int8, nf4} x one workload.

    python benchmarks/fit_speed.py --out benchmarks/results/fit_speed/fit_speed-cpu-dev.json
    python benchmarks/fit_speed.py --quant none,int8,nf4 --runs 3 \
        --out benchmarks/results/fit_speed/fit_speed-quant-churn-cpu-dev.json
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, write_json  # noqa: E402

from vramtui.cli import build_parser  # noqa: E402
from vramtui.commands import fit  # noqa: E402
from vramtui.predict import config_trace, kv_replay, load, peaks, planner, quantized  # noqa: E402

GOAL_S = 2.0


def _clear() -> None:
    for cached in (planner._peak, planner._architecture, load.load_figures, load.load_sizes,
                   load.load_items, config_trace._written, quantized._plan,
                   quantized._record_tensors):  # fmt: skip
        cached.cache_clear()
    kv_replay.clear_caches()


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_command(flags: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system) of `python -m vramtui fit FLAGS`,
    each in a fresh process and trace cache, after one warm-up run. On a shared machine
    the CPU seconds are what the command itself cost; the wall time adds the wait."""
    times, cpu = [], []
    for n in range(runs + 1):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONPATH": str(REPO)}
            cpu_before = _child_cpu()
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "vramtui", "fit", *flags],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"vramtui fit {' '.join(flags)}: {done.stderr.strip()}")
        if n:  # the first run warms the file cache
            times.append(elapsed)
            cpu.append(_child_cpu() - cpu_before)
    return times, cpu


class _Timed:
    """A function's calls, each timed (CPU seconds of this process), passed through."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function, self.seconds, self.calls = function, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - started
            self.calls += 1


def search_only(flags: list[str], runs: int) -> tuple[list[float], list[float], list[float], int]:
    """Wall and CPU seconds of the search in this process (caches cleared), the CPU
    seconds of those spent replaying the cache's segments (kv_cache_replay), and the
    row count."""
    args = build_parser().parse_args(["fit", *flags])
    times, cpu, replay, rows = [], [], [], 0
    real = peaks.kv_cache_replay
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        for _ in range(runs):
            _clear()
            timed = _Timed(real)
            peaks.kv_cache_replay = timed  # type: ignore[assignment]
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                _, _, found = fit.plan(args, planner.GeneratePlanner())
            finally:
                peaks.kv_cache_replay = real
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            replay.append(timed.seconds)
            rows = len(found)
    return times, cpu, replay, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gpu", default="rtx-4090")
    parser.add_argument("--quant", default="none", help="precisions, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    flags = ["--gpu", args.gpu, "--quant", args.quant, "--json"]
    command, cpu = whole_command(flags, args.runs)
    search, search_cpu, replay, rows = search_only(flags, args.runs)
    result: dict[str, Any] = {
        "what": __doc__.splitlines()[0],
        "flags": flags,
        "rows": rows,
        "whole_command_s": [round(t, 3) for t in command],
        "whole_command_median_s": round(statistics.median(command), 3),
        "whole_command_cpu_s": [round(t, 3) for t in cpu],
        "whole_command_cpu_median_s": round(statistics.median(cpu), 3),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "search_only_s": [round(t, 3) for t in search],
        "search_only_median_s": round(statistics.median(search), 3),
        "search_only_cpu_s": [round(t, 3) for t in search_cpu],
        "search_only_cpu_median_s": round(statistics.median(search_cpu), 3),
        # of the search's CPU seconds, those inside the replay of the cache's segments
        "search_replay_cpu_s": [round(t, 3) for t in replay],
        "search_replay_cpu_median_s": round(statistics.median(replay), 3),
        "goal_s": GOAL_S,
        "met": statistics.median(command) <= GOAL_S,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    write_json(args.out, result)
    print(
        f"vramtui fit {' '.join(flags)}: {rows} rows; whole command median "
        f"{result['whole_command_median_s']} s wall, "
        f"{result['whole_command_cpu_median_s']} s CPU; search alone median "
        f"{result['search_only_median_s']} s, of which the replay "
        f"{result['search_replay_cpu_median_s']} s CPU (goal {GOAL_S} s)"
    )
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
