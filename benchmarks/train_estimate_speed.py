"""How long the approximate training estimate takes: every catalogue model of a family
written out x {full, lora, qlora}, cold (the config's written checkpoint not cached),
in one process: the step written from the config's numbers and replayed on the
allocator model, as `vramtui estimate --workload` computes it when no trace is cached;
and, apart, the search for the largest micro-batch and sequence that fit a 24 GiB card
(what `estimate` adds where it knows the GPU's memory). Goal: every estimate within
200 ms. Then, as a user types it, `vramtui fit --workload lora --gpu rtx-4090 --json`
over the whole catalogue with an empty trace cache (every row written from the config
or listed), in fresh processes after a warm-up (fit_speed.py's `whole_command`).

    python benchmarks/train_estimate_speed.py \
        --out benchmarks/results/train_approx/train_estimate_speed-cpu-dev.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import package_versions, write_json  # noqa: E402
from fit_speed import whole_command  # noqa: E402

from vramtui.models.catalogue import CATALOGUE  # noqa: E402
from vramtui.predict import config_trace  # noqa: E402
from vramtui.predict.training import config_params  # noqa: E402
from vramtui.predict.training.config_steps import config_train_trace  # noqa: E402
from vramtui.predict.training.fit import Room, largest  # noqa: E402
from vramtui.predict.training.replay import estimate_training  # noqa: E402
from vramtui.predict.training.trace import TrainShape  # noqa: E402

GOAL_MS = 200.0
CARD = 24 * 1024**3


def _estimate_ms(config: dict[str, Any], shape: TrainShape) -> float | None:
    config_params._written.cache_clear()
    config_trace._written.cache_clear()
    started = time.perf_counter()
    written = config_train_trace(config, shape)
    if written is None:
        return None
    estimate_training(written, shape)
    return (time.perf_counter() - started) * 1000


def _search_ms(config: dict[str, Any], shape: TrainShape, positions: int) -> float:
    room = Room(CARD)

    def fits(field: str) -> Any:
        def at(n: int) -> bool:
            changed = replace(shape, **{field: n})
            written = config_train_trace(config, changed)
            assert written is not None
            return room.fits(estimate_training(written, changed))

        return at

    started = time.perf_counter()
    largest(fits("batch"), shape.batch, 4096)
    largest(fits("seq"), shape.seq, positions)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--fit-runs", type=int, default=3, help="fresh `fit` processes")
    parser.add_argument("--search", nargs="*", default=["llama-3.2-1b", "llama-3.1-8b"],
                        help="models whose fit search is timed too")  # fmt: skip
    args = parser.parse_args()
    cells, skipped = [], []
    for entry in CATALOGUE.values():
        for method in ("full", "lora", "qlora"):
            shape = TrainShape(method=method, seq=args.seq)
            ms = _estimate_ms(dict(entry.config), shape)
            if ms is None:
                skipped.append(entry.name)
                break
            cell: dict[str, Any] = {"model": entry.name, "method": method, "ms": round(ms, 2)}
            if entry.name in args.search:
                positions = entry.positions or 2048
                cell["search_ms"] = round(_search_ms(dict(entry.config), shape, positions), 1)
            cells.append(cell)
            print(cell, flush=True)
    times = [c["ms"] for c in cells]
    flags = ["--workload", "lora", "--gpu", "rtx-4090", "--json"]
    fit_wall, fit_cpu = whole_command(flags, args.fit_runs) if args.fit_runs else ([], [])
    write_json(
        args.out,
        {
            "what": "approximate training estimate, cold, in one process (micro-batch 1, "
            f"sequence {args.seq}, bfloat16, sdpa, AdamW, CUDA allocator model)",
            "machine": f"shared 2-core development machine, {platform.machine()}, "
            f"load average {os.getloadavg()[0]:.2f} at the end",
            "versions": package_versions(("vramtui",)),
            "goal_ms": GOAL_MS,
            "median_ms": round(statistics.median(times), 2),
            "most_ms": max(times),
            "within_goal": all(t <= GOAL_MS for t in times),
            "families_not_written": sorted(set(skipped)),
            "fit_flags": flags,
            "fit_whole_command_s": [round(t, 3) for t in fit_wall],
            "fit_whole_command_cpu_s": [round(t, 3) for t in fit_cpu],
            "fit_whole_command_median_s": round(statistics.median(fit_wall), 3)
            if fit_wall
            else None,
            "cells": cells,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
