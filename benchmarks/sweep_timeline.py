"""When each cell's engine of a `vramtui bench` sweep was spawned, done importing, handed
its spec and ended, in seconds from the sweep's start: where a sweep's time goes.

    python benchmarks/sweep_timeline.py -m opt-125m --tokens 10,20 --batch 1,2 --device cpu

Takes bench's flags (`--ahead K`, `--no-overlap`); runs the sweep in this process.
"""

from __future__ import annotations

import argparse
import sys
import time

from vramtui.commands import bench
from vramtui.measure.session import Session
from vramtui.sweep.grid import Cell
from vramtui.sweep.sweep_runner import Sweep


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    cells, _ = bench.axes_from_args(args).plan()
    started: list[tuple[Cell, Session]] = []
    t0 = time.monotonic()
    sweep = Sweep(
        cells,
        ahead=0 if args.no_overlap else args.ahead,
        on_cell_start=lambda cell, session: started.append((cell, session)),
    )
    sweep.run()
    wall = time.monotonic() - t0

    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - t0:6.2f}"

    print(f"ahead: {sweep.ahead}")
    print("cell  tokens batch engine      spawned imported  handed  ended")
    for cell, session in started:
        view = session.snapshot()
        up = view.startup
        times = (up.spawned, up.imported, up.spec_received) if up else (None, None, None)
        engine = str(view.environment.engine_start)
        print(
            f"{cell.index:4} {cell.spec.tokens:7} {cell.spec.batch:5} {engine:11} "
            + " ".join(at(t) for t in (*times, view.ended_at))
        )
    print(f"wall {wall:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
