"""Screens of the app drawn from sessions recorded on a GPU: summary, run, compare, profile.

The GPU box has no terminal to show the app in, so the sessions saved there (each
its JSON and CSV, as `vramtui run --json F.json --csv F.csv` or `vramtui profile`
write them) are read back here by vramtui.report.saved into the events the engine
sent (Hello, Placed, Loaded, the phases, every engine sample with each device's
reading, every NVML reading, a program's generate() calls, how the run ended, its
allocation snapshot), each rebuilt session's peaks, status, generate() calls and
devices are checked against those its JSON recorded (a difference stops the
script), and the app draws the screen with Textual's run_test:

    python benchmarks/session_screenshots.py summary \\
        benchmarks/results/snapshot/snap2000-opt-1.3b-h200.json --out screenshots/snapshot-peak.svg
    python benchmarks/session_screenshots.py run \\
        benchmarks/results/offload_compare/offload-h200.json --out screenshots/offload.svg
    python benchmarks/session_screenshots.py run --follow cpu \\
        benchmarks/results/offload_compare/offload-h200.json --out screenshots/offload-cpu.svg
    python benchmarks/session_screenshots.py compare \\
        benchmarks/results/snapshot/snap2000-opt-1.3b-h200.json \\
        benchmarks/results/offload_compare/offload-h200.json --out screenshots/compare.svg
    python benchmarks/session_screenshots.py profile \\
        benchmarks/results/profile_gpu/two_generations.json \\
        --output "reply: 200 tokens in 11.67 s" \\
        --output "batch: 8 x 4 beams, 100 tokens in 6.98 s" --out screenshots/profile.svg

summary: the app's summary screen when the run ended, completed or failed (a run out
of memory with `--snapshot` lists what held the bytes at the failed allocation), made
taller until all of it shows; run: the run screen of the ended run (the summary, then
`g`; `--follow DEVICE`: a placed run's screen following that device, as `d` makes it);
compare: what `vramtui compare A B --app` shows, each session its .json or .csv
(a JSON alone has peaks but no line); profile: `vramtui profile --live`'s screen.
The app saves its own copy of the run it was shown (in the temporary folder's
vramtui-replay/, named by the recorded start): the summary names it, the script removes it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.session import Environment, Session
from vramtui.measure.summary_check import rebuilt_differences
from vramtui.measure.summary_format import session_from
from vramtui.report.saved import read_session_files
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec
from vramtui.tui.app import VramApp
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.summary_screen import SummaryScreen

SIZES = {"summary": (100, 40), "run": (100, 30), "compare": (120, 32), "profile": (120, 36)}


def read_session(path: Path) -> tuple[dict[str, Any], Session]:
    """The recorded session (its .json and the .csv beside it), rebuilt and checked."""
    json_path, csv_path = path.with_suffix(".json"), path.with_suffix(".csv")
    for needed in (json_path, csv_path):
        if not needed.is_file():
            raise SystemExit(f"no such file: {needed} (a session's .json and .csv are read)")
    summary, items = read_session_files(json_path)
    session = session_from(summary, items)
    check(session, summary, json_path)
    return summary, session


def check(session: Session, summary: dict[str, Any], where: Path) -> None:
    wrong = rebuilt_differences(session.snapshot(), summary)
    if wrong:
        raise SystemExit(
            f"{where}: the rebuilt session differs from the recorded one:\n" + "\n".join(wrong)
        )


class Recorded:
    """A recorder whose session is already complete (the recorded run, ended). held:
    run() lasts until cancel(), as a program still running (the profile screen)."""

    def __init__(self, session: Session, held: bool = False) -> None:
        self.session = session
        self._cancelled = threading.Event()
        if not held:
            self._cancelled.set()

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        self._cancelled.wait()
        return self.session

    def cancel(self, reason: str = "") -> None:
        self._cancelled.set()


def recorded_devices(env: Environment) -> DeviceList:
    """The start screen's list: the recorded GPU and the CPU (its free memory unknown)."""
    gpu = DeviceChoice(str(env.device), str(env.device_name), env.device_total_bytes)
    return DeviceList((gpu, DeviceChoice("cpu", "CPU")))


def started(summary: dict[str, Any]) -> datetime:
    """When the recorded run started: the name the app saves its copy under."""
    return datetime.strptime(summary["started_at"], "%Y-%m-%dT%H:%M:%S%z")


def make_app(summary: dict[str, Any], session: Session, sessions: Path) -> VramApp:
    view = session.snapshot()
    assert isinstance(view.spec, RunSpec), "a program's session is drawn by --screen profile"
    return VramApp(
        view.spec,
        start=True,
        out_dir=sessions,  # the app saves what it ran: its copy, removed after the shot
        make_recorder=lambda _spec: Recorded(session),
        list_devices=lambda: recorded_devices(view.environment),
        clock=lambda: view.ended_at or 0.0,
        wall_clock=lambda: started(summary),
    )


async def whole_summary(app: VramApp, pilot: Any) -> None:
    """A summary longer than the screen (a long failure, many notes): the screen made
    taller until it all shows, rather than a screenshot cut off."""
    scroll = app.screen.query_one("#summary")
    if scroll.max_scroll_y > 0:
        width, height = app.size
        await pilot.resize_terminal(width, height + int(scroll.max_scroll_y))
        await pilot.pause(0.3)


async def shoot_app(
    summary: dict[str, Any],
    session: Session,
    out: Path,
    screen: str,
    sessions: Path,
    follow: str | None = None,
) -> None:
    """The summary screen of the ended run, or its run screen (`g` on the summary)."""
    app = make_app(summary, session, sessions)
    async with app.run_test(size=SIZES[screen]) as pilot:
        while not isinstance(app.screen, SummaryScreen):
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        if screen == "summary":
            await whole_summary(app, pilot)
        if screen == "run":
            await pilot.press("g")  # the summary's Graph: the run screen, ended
            await pilot.pause(0.3)
            shown = app.screen
            assert isinstance(shown, RunScreen), type(shown).__name__
            shown.redraw()
            await pilot.pause(0.3)
            await follow_device(shown, pilot, follow)
        app.save_screenshot(filename=out.name, path=str(out.parent))
    remove_copy(app)


async def follow_device(screen: RunScreen, pilot: Any, device: str | None) -> None:
    """`d` until the run screen follows `device` (None: the run's own, as it opens)."""
    for _ in screen.devices:
        if device is None or screen.device == device:
            break
        await pilot.press("d")
        await pilot.pause(0.3)
    if device is not None and screen.device != device:
        raise SystemExit(f"no device {device} in this run: {screen.devices}")


async def shoot_profile(session: Session, lines: list[str], out: Path, sessions: Path) -> None:
    """`vramtui profile --live`: the program's run screen, its output below the plot."""
    from vramtui.tui.profile_app import ProfileApp

    def make(on_output: Callable[[str], None]) -> Recorded:
        for line in lines:
            on_output(line)
        return Recorded(session, held=True)

    app = ProfileApp(make, out_dir=sessions, clock=lambda: session.snapshot().ended_at or 0.0)
    async with app.run_test(size=SIZES["profile"]) as pilot:
        await pilot.pause(0.5)
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        app.save_screenshot(filename=out.name, path=str(out.parent))
        app.current.recorder.cancel()  # type: ignore[union-attr]
        while not app.current.ended:  # type: ignore[union-attr]
            await pilot.pause(0.1)
    remove_copy(app)


def remove_copy(app: VramApp) -> None:
    """The files the app saved of the run it was shown: a copy of the recorded ones."""
    saved = app.current.saved if app.current else None
    for path in (saved.csv, saved.json) if saved else ():
        path.unlink(missing_ok=True)


async def shoot_compare(paths: list[Path], out: Path) -> None:
    """`vramtui compare A B --app`: the sessions overlaid on one token axis."""
    from vramtui.commands.compare import load
    from vramtui.tui.compare_app import CompareApp
    from vramtui.tui.screens.compare_screen import CompareScreen

    for path in paths:  # a session with both files is checked as the others are
        if path.with_suffix(".json").is_file() and path.with_suffix(".csv").is_file():
            read_session(path)
    app = CompareApp(load([str(p) for p in paths]))
    async with app.run_test(size=SIZES["compare"]) as pilot:
        while not isinstance(app.screen, CompareScreen):
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def shoot(
    screen: str,
    paths: list[Path],
    out: Path,
    sessions: Path | None = None,
    lines: list[str] | None = None,
    follow: str | None = None,
) -> None:
    """Draw `screen` of the recorded sessions into `out`. sessions: where the app saves
    its copy of the run (removed after the shot); lines: a program's output (profile)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if screen == "compare":
        asyncio.run(shoot_compare(paths, out))
        return
    summary, session = read_session(paths[0])
    folder = sessions or Path(tempfile.gettempdir()) / "vramtui-replay"
    if screen == "profile":
        asyncio.run(shoot_profile(session, lines or [], out, folder))
    else:
        asyncio.run(shoot_app(summary, session, out, screen, folder, follow))
    if sessions is None and not any(folder.iterdir()):
        folder.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("screen", choices=sorted(SIZES))
    parser.add_argument("sessions", nargs="+", type=Path, help="each session's .json (or .csv)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write")
    parser.add_argument(
        "--output", action="append", default=[], help="profile: a line the program wrote"
    )
    parser.add_argument("--follow", help="run: the device a placed run's screen follows (d)")
    args = parser.parse_args()
    if args.screen != "compare" and len(args.sessions) != 1:
        parser.error(f"{args.screen} draws one session")
    if args.screen == "compare" and len(args.sessions) < 2:
        parser.error("compare needs two sessions or more")
    shoot(args.screen, args.sessions, args.out, lines=args.output, follow=args.follow)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
