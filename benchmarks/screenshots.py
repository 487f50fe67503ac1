"""Screenshots of the real app on a real run, for the README: start, mid-decode, summary.

Runs the app headless (Textual's `run_test`, default 120x36) on a real engine
run and saves, into `--out`:
  start.svg     the start screen with the model selected and the device list
                answered by NVML (the GPU's name), before the run starts;
  decode.svg    the run screen once about half of the tokens are done;
  summary.svg   the summary screen after the run has ended;
  screenshots.json  the session summary (status, peaks, rates), GPU, versions.

On a GPU box:
    python benchmarks/screenshots.py --out screenshots
Dry run on the CPU (do not commit the result):
    python benchmarks/screenshots.py --config tests/fixtures/tiny-opt.json --device cpu \\
        --tokens 100 --out /tmp/shots
Sessions are autosaved where the app saves them (the user's data folder) unless
`--sessions DIR` is given; the summary screen names the place.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from _common import write_json  # benchmarks/ is sys.path[0] for a script

from vramtui import __version__
from vramtui.commands.common import add_spec_arguments, build_spec
from vramtui.errors import UsageError
from vramtui.measure.device_inventory import available
from vramtui.measure.summary_format import summary as summary_of
from vramtui.runspec import RunSpec, resolve


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


async def wait_until(
    pilot: Any, what: str, condition: Callable[[], bool], timeout: float, step: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(step)


async def shoot(spec: RunSpec, args: argparse.Namespace) -> dict[str, Any]:
    from textual.widgets import Static

    from vramtui.tui.app import VramApp
    from vramtui.tui.device_list import initial_device_options
    from vramtui.tui.screens.run_screen import RunScreen
    from vramtui.tui.screens.start_screen import StartScreen
    from vramtui.tui.screens.summary_screen import SummaryScreen
    from vramtui.tui.widgets.memory_plot import MemoryPlot

    out: Path = args.out
    saved: dict[str, str] = {}
    facts: dict[str, Any] = {}
    app = VramApp(spec, start=False, out_dir=args.sessions)
    width, height = args.size

    def save(name: str) -> None:
        path = app.save_screenshot(filename=f"{name}.svg", path=str(out))
        saved[name] = path
        log(f"saved {path} ({type(app.screen).__name__})")

    async with app.run_test(size=(width, height)) as pilot:
        # 1. the start screen, once the device list has been answered
        await wait_until(pilot, "the start screen", lambda: isinstance(app.screen, StartScreen), 30)
        start = app.screen
        assert isinstance(start, StartScreen)
        before = initial_device_options(start.base.device)  # until NVML has answered
        await wait_until(pilot, "the device list", lambda: start.devices != before, 60)
        await pilot.pause(0.5)
        facts["devices_listed"] = [d.label for d in start.devices]
        facts["form_spec"] = start.read_spec().to_dict()
        save("start")

        # 2. a user reads the start screen a while: Run once the spare engine has done
        # its imports (as the app is used), then the run screen mid-decode
        if app.spares is not None:
            pool = app.spares.pool
            await wait_until(pilot, "a spare engine", lambda: bool(pool.spares), 30)
            ready = await asyncio.to_thread(pool.spares[0].wait_ready, args.timeout)
            facts["spare_ready_before_run"] = ready
            log(f"spare engine ready before Run: {ready}")
        await pilot.press("ctrl+r")
        await wait_until(pilot, "the run to start", lambda: app.current is not None, 30)
        run = app.current
        assert run is not None
        session = run.session  # written by the engine's thread: read through snapshots
        half = max(1, spec.tokens // 2)
        await wait_until(
            pilot,
            f"token {half} of {spec.tokens}",
            lambda: session.snapshot().tokens_done >= half or run.ended,
            args.timeout,
            step=0.05,
        )
        if not run.ended and isinstance(app.screen, RunScreen):
            screen = app.screen
            facts["decode_tokens_done_at_shot"] = session.snapshot().tokens_done
            screen.redraw()  # what the next timer tick would show
            await pilot.pause()
            save("decode")
            # what the shot shows, to check that the plot and the status line agree
            shown = screen.query_one("#plot", MemoryPlot).data
            ends = [max(line.xs) for line in shown.lines if line.xs] if shown else []
            facts["decode_plot_last_token"] = max(ends, default=None)
            facts["decode_status_line"] = str(screen.query_one("#status", Static).content)
            facts["decode_screen"] = type(app.screen).__name__
        else:
            log(f"the run ended ({session.snapshot().status}) before token {half}: no decode.svg")

        # 3. the summary screen after the run
        await wait_until(pilot, "the end of the run", lambda: run.ended, args.timeout)
        await wait_until(
            pilot, "the summary screen", lambda: isinstance(app.screen, SummaryScreen), 30
        )
        await pilot.pause(0.5)
        save("summary")
        facts["summary"] = summary_of(session.snapshot())
        facts["saved_session"] = str(run.saved.json) if run.saved else run.save_error
        app.exit(0)
    facts["screenshots"] = saved
    return facts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_spec_arguments(parser)
    parser.set_defaults(model="opt-1.3b", tokens=2000, device="cuda:0")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("screenshots"),
        help="folder for the SVGs and screenshots.json (default: screenshots/)",
    )
    parser.add_argument("--size", default="120x36", help="terminal size, COLSxROWS")
    parser.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        help="seconds to wait for each stage (load to mid-decode, to the end)",
    )
    parser.add_argument(
        "--sessions", type=Path, help="autosave the session here (default: the app's data folder)"
    )
    args = parser.parse_args(argv)
    try:
        cols, rows = (int(n) for n in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be COLSxROWS, got {args.size!r}")
    args.size = (cols, rows)
    if (args.config or args.checkpoint) and args.model == parser.get_default("model"):
        args.model = None  # named after the path, as `vramtui --config ...` names it
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = resolve(build_spec(args), available()).spec
    except UsageError as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sessions is not None:
        args.sessions.mkdir(parents=True, exist_ok=True)

    # The last resort against a hang anywhere (the engine is ended by the app on exit).
    limit = 2 * args.timeout + 90

    def give_up() -> None:
        print(f"screenshots: gave up after {limit:.0f} s", file=sys.stderr, flush=True)
        os._exit(3)

    watchdog = threading.Timer(limit, give_up)
    watchdog.daemon = True
    watchdog.start()

    log(f"app on {spec.model}, {spec.tokens} tokens, {spec.device}, {args.size[0]}x{args.size[1]}")
    error: str | None = None
    try:
        facts = asyncio.run(shoot(spec, args))
    except Exception as exc:  # noqa: BLE001 - say what happened, keep what was saved
        error = f"{type(exc).__name__}: {exc}"
        facts = {}
    watchdog.cancel()

    summary = facts.get("summary") or {}
    env = summary.get("environment", {})
    report = {
        "command": " ".join(["python", "benchmarks/screenshots.py", *(argv or sys.argv[1:])]),
        "spec": spec.to_dict(),
        "size": list(args.size),
        "error": error,
        "gpu_name": env.get("gpu_name") or env.get("device_name"),
        "versions": {
            "driver": env.get("driver"),
            "torch": env.get("torch"),
            "transformers": env.get("transformers"),
            "cuda_runtime": env.get("cuda_runtime"),
            "python": platform.python_version(),
            "textual": package_version("textual"),
            "textual-plotext": package_version("textual-plotext"),
            "plotext": package_version("plotext"),
            "vramtui": __version__,
        },
        **facts,
    }
    path = args.out / "screenshots.json"
    write_json(path, report)

    shots = facts.get("screenshots", {})
    print(f"screenshots: {', '.join(f'{k} -> {v}' for k, v in shots.items()) or 'none'}")
    if summary:
        timings = summary.get("timings") or {}
        gb = 1e9

        def fig(key: str) -> str:
            value = summary.get(key)
            return f"{value / gb:.2f} GB" if value else "-"

        print(
            f"run: {summary.get('status')}, {summary.get('tokens_generated')}/"
            f"{summary.get('tokens_requested')} tokens of {summary.get('model')} on "
            f"{report['gpu_name']}, {timings.get('tokens_per_s') or 0:.1f} tok/s; peaks: "
            f"allocated {fig('peak_allocated_bytes')}, reserved {fig('peak_reserved_bytes')}, "
            f"NVML process {fig('peak_nvml_process_bytes')}"
        )
    if "decode_tokens_done_at_shot" in facts:
        print(f"decode.svg at token {facts['decode_tokens_done_at_shot']} of {spec.tokens}")
    print(f"wrote {path}")
    if error:
        print(f"FAILED: {error}")
        return 1
    missing = [n for n in ("start", "decode", "summary") if n not in shots]
    if missing or summary.get("status") != "completed":
        print(f"INCOMPLETE: missing {missing}, status {summary.get('status')}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
