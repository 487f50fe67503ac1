"""What one redraw of the run screen costs with a long history (goal: <= 15 ms at 2000 tokens).

No GPU and no engine: a synthetic opt-1.3b run (vramtui.testing.synthetic.synthetic_run)
of `--tokens` decode steps with NVML samples at `--nvml-hz` (200 Hz, the
Recorder's rate) is replayed into a Session, still in progress, and the real app
shows it on its run screen, headless, at 120x40. Then, N times:

  redraw  `RunScreen.redraw()` with its change check defeated (`_plot_key = None`),
          i.e. everything the 4 Hz timer does when new tokens have come in: the
          status line, the plot data cut to the plot's width, the plotext figure,
          the series table, the side facts, the breakdown panel and OOM forecast;
  frame   what Textual then does for the next frame: layout, rendering every
          widget that changed (plotext's canvas build among them) and the
          compositor's update, encoded to the escape sequences a terminal would get
          (headless Textual skips only that encoding and the write; it is done here
          so the figure includes it; the write itself is not).

The figure is the median of redraw + frame; p90 and max are reported too,
`idle` is a timer tick when nothing has changed (the status line only) and
`plot_render` the plot's canvas build alone (plotext's figure to Textual strips,
done once per change of data or size and kept for later frames; part of frame). The screen measured
is saved as redraw_cost.svg beside redraw_cost.json.

    python benchmarks/redraw_cost.py --out benchmarks/results/redraw
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from _common import write_json  # benchmarks/ is sys.path[0] for a script

from vramtui import __version__
from vramtui.measure.device_inventory import cpu_name
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun, RunSpec, resolve

SIZE = (120, 40)
GOAL_MS = 15.0
# The made-up GPU the synthetic run is on (no NVML is asked).
DEVICES = DeviceList((DeviceChoice("cuda:0", "NVIDIA H100 80GB HBM3", 85 * 10**9, 84 * 10**9),))


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max_ms": ordered[-1],
        "min_ms": ordered[0],
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from vramtui.testing.replay import ReplayRecorder
    from vramtui.testing.synthetic import synthetic_run
    from vramtui.tui.app import VramApp
    from vramtui.tui.screens.run_screen import RunScreen

    # A run still in progress at `tokens` (of a few more requested): the live case.
    requested = args.tokens + 40
    items = synthetic_run(
        args.model, requested, upto=args.tokens, nvml_hz=args.nvml_hz, rate=args.rate
    )
    spec = RunSpec(model=args.model, tokens=requested, device="cuda:0")

    def recorder(run: ResolvedRun) -> ReplayRecorder:
        return ReplayRecorder(run, items, hold=True)

    with tempfile.TemporaryDirectory(prefix="vramtui-redraw-") as folder:
        now = max(float(getattr(item, "t", 0.0)) for item in items) + 0.01
        app = VramApp(
            spec,
            make_recorder=recorder,
            list_devices=lambda: DEVICES,
            out_dir=Path(folder),
            clock=lambda: now,
        )  # the replay's clock
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            app.begin(resolve(spec, DEVICES))
            deadline = time.monotonic() + 30.0
            while not isinstance(app.screen, RunScreen) or not app.screen.is_mounted:
                if time.monotonic() > deadline:
                    raise TimeoutError("the run screen did not mount within 30 s")
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            screen = app.screen
            assert isinstance(screen, RunScreen)

            # Headless Textual drops the frame in App._display; encode it as a terminal
            # driver would (not write it) so the cost is in the figure.
            encoded: list[int] = []

            def display(_screen: object, renderable: Any) -> None:
                if renderable is not None:
                    encoded.append(len(renderable.render_segments(app.console)))

            app._display = display  # type: ignore[method-assign]

            redraw_ms: list[float] = []
            frame_ms: list[float] = []
            total_ms: list[float] = []
            idle_ms: list[float] = []
            for _ in range(args.warmup + args.repeats):
                screen._plot_key = None
                t0 = time.perf_counter()
                screen.redraw()
                t1 = time.perf_counter()
                screen._on_timer_update()
                t2 = time.perf_counter()
                await asyncio.sleep(0)
                screen.redraw()  # nothing changed: the status line only
                screen._on_timer_update()
                t3 = time.perf_counter()
                await asyncio.sleep(0)
                redraw_ms.append((t1 - t0) * 1e3)
                frame_ms.append((t2 - t1) * 1e3)
                total_ms.append((t2 - t0) * 1e3)
                idle_ms.append((t3 - t2) * 1e3)
            w = args.warmup
            plot = screen.query_one("#plot")
            plot_ms: list[float] = []  # of the frame: plotext's canvas build alone
            for _ in range(args.warmup + args.repeats):
                t0 = time.perf_counter()
                plot.canvas(rebuild=True)  # not the kept figure: built again, as after new data
                plot_ms.append((time.perf_counter() - t0) * 1e3)
            screenshot = app.save_screenshot(filename="redraw_cost.svg", path=str(args.out))
            session = screen.run.session.snapshot()
            facts = {
                "tokens_in_history": session.tokens_done,
                "samples": len(session.samples),
                "nvml_samples_kept": len(session.nvml),
                "plot_size": [plot.size.width, plot.size.height],
                "frames_encoded": len(encoded),
                "median_frame_chars": statistics.median(encoded) if encoded else 0,
                "screenshot": screenshot,
            }
            app.exit(0)
    return {
        "redraw": stats(redraw_ms[w:]),
        "frame": stats(frame_ms[w:]),
        "total": stats(total_ms[w:]),
        "idle": stats(idle_ms[w:]),
        "plot_render": stats(plot_ms[w:]),
        "total_ms_all": total_ms[w:],
        **facts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="opt-1.3b", help="catalogue name for the synthetic run")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of history")
    parser.add_argument("--nvml-hz", type=float, default=200.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=30.0,
        help="synthetic tok/s (slower = more NVML samples per token)",
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True, help="folder for redraw_cost.json")
    parser.add_argument("--json", type=Path, help="the JSON's path (default OUT/redraw_cost.json)")
    parser.add_argument("--note", default="", help="a note kept in the JSON (e.g. figures before)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    result = asyncio.run(asyncio.wait_for(measure(args), timeout=300.0))
    report = {
        "command": " ".join(["python", "benchmarks/redraw_cost.py", *(argv or sys.argv[1:])]),
        "note": args.note,
        "settings": {
            "model": args.model,
            "tokens": args.tokens,
            "nvml_hz": args.nvml_hz,
            "rate": args.rate,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "size": list(SIZE),
            "goal_ms": GOAL_MS,
        },
        "environment": {
            "cpu": cpu_name(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "textual": package_version("textual"),
            "textual-plotext": package_version("textual-plotext"),
            "plotext": package_version("plotext"),
            "vramtui": __version__,
        },
        **result,
    }
    path = args.json or args.out / "redraw_cost.json"
    write_json(path, report)
    t, r, f, i = report["total"], report["redraw"], report["frame"], report["idle"]
    pr = report["plot_render"]
    verdict = "meets" if t["median_ms"] <= GOAL_MS else "MISSES"
    print(
        f"run screen {SIZE[0]}x{SIZE[1]}, {report['tokens_in_history']} tokens, "
        f"{report['nvml_samples_kept']} NVML samples kept, plot {report['plot_size']}, "
        f"on {report['environment']['cpu']}, textual {report['environment']['textual']}"
    )
    print(
        f"redraw {r['median_ms']:.2f} ms + frame {f['median_ms']:.2f} ms = "
        f"{t['median_ms']:.2f} ms median (p90 {t['p90_ms']:.2f}, max {t['max_ms']:.2f}; "
        f"idle tick {i['median_ms']:.2f}; canvas build alone {pr['median_ms']:.2f}) "
        f"over {args.repeats}: "
        f"{verdict} the {GOAL_MS:.0f} ms goal"
    )
    print(f"wrote {path} and {report['screenshot']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
