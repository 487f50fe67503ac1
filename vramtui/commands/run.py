"""`vramtui run`: one headless run with a progress bar and a peak summary."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from vramtui.analysis.placed_comparison import placed_estimates
from vramtui.commands.common import add_spec_arguments, build_spec, say_variant
from vramtui.commands.headless import run_in_thread, stderr_line, write_stderr
from vramtui.commands.out_option import add_out_argument, check_out, saved_line
from vramtui.commands.ram_check import add_ram_check_argument, check_ram
from vramtui.commands.snapshot_option import add_snapshot_argument, with_snapshot
from vramtui.commands.tp_option import add_tp_arguments, tp_launch_of
from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_OOM, EXIT_USAGE, UsageError
from vramtui.measure import device_inventory
from vramtui.measure import events as ev
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session, SessionView
from vramtui.measure.summary_format import typed_summary
from vramtui.report.export import check_writable, write_csv, write_json
from vramtui.report.sessions import autosave
from vramtui.report.summary_text import summary_text
from vramtui.runspec import ResolvedRun, resolve
from vramtui.runspec.program_spec import tokens_requested
from vramtui.units import format_bytes


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="one headless run: progress, peak summary, CSV/JSON",
        description="Run one generation in a fresh engine process and print its peaks.",
    )
    add_spec_arguments(parser)
    parser.add_argument("--csv", metavar="FILE", help="write every sample as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    add_out_argument(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing export files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_ram_check_argument(parser)
    add_snapshot_argument(parser)
    add_tp_arguments(parser)
    parser.set_defaults(command=run)


class Progress:
    """token i/N, tok/s and current memory on one stderr line, at most 10 times a second
    on a terminal; elsewhere (a log) a line at every phase and every 5 seconds."""

    def __init__(self, session: Session, enabled: bool) -> None:
        self.session = session
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._hello = False

    def __call__(self, event: ev.Event) -> None:
        self._hello = self._hello or isinstance(event, ev.Hello)
        if not self.enabled or not self._hello:
            return  # nothing to show until the engine has said what it runs on
        now = time.monotonic()
        final = isinstance(event, (ev.Done, ev.Failed))
        phase = isinstance(event, ev.Phase) and not self.tty
        if not (final or phase) and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        self.draw(self.session.snapshot(), final)

    def draw(self, view: SessionView, final: bool = False) -> None:
        total = tokens_requested(view.spec)
        done = view.tokens_done
        width = 24
        filled = int(width * done / total) if total else 0
        rate = view.live_tokens_per_s()
        memory = view.latest("nvml_process") or view.latest("reserved") or view.latest("allocated")
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {view.current_phase:<7} "
            f"token {done}/{total}  {rate or 0:6.1f} tok/s  {format_bytes(memory)}"
        )
        if self.tty:
            write_stderr("\r" + line + ("\n" if final else ""))
        else:
            write_stderr(line + "\n")


def exit_code(view: SessionView, interrupted: bool) -> int:
    if interrupted or view.status == "cancelled":
        return EXIT_INTERRUPTED
    if view.status == "completed":
        return EXIT_OK
    failure = view.failure
    if failure and failure.kind == "oom":
        return EXIT_OOM
    if failure and failure.kind == "usage":
        return EXIT_USAGE
    return EXIT_FAILED


def check_outputs(csv_path: str | None, json_path: str | None, force: bool) -> None:
    """The export files, checked before anything runs."""
    if csv_path and json_path and Path(csv_path).resolve() == Path(json_path).resolve():
        raise UsageError(f"--csv and --json name the same file: {csv_path}")
    for path in (csv_path, json_path):
        if path:
            check_writable(path, force=force)


def save(view: SessionView, csv_path: str | None, json_path: str | None) -> bool:
    """Write the files asked for, each on its own; a file that fails is said in one line.
    True if all were written."""
    failed = []
    for path, write in ((csv_path, write_csv), (json_path, write_json)):
        if not path:
            continue
        try:
            write(view, path)
        except OSError as exc:
            failed.append(path)
            stderr_line(f"vramtui: cannot write {path}: {exc.strerror or exc}")
    return not failed


def keep(view: SessionView, csv_path: str | None, json_path: str | None, folder: Path) -> bool:
    """The files asked for, and the session in `folder` (every run is kept there, its path
    said on stderr). True if all were written."""
    written = save(view, csv_path, json_path)
    try:
        stderr_line(saved_line(autosave(view, folder, datetime.now())))
    except OSError as exc:
        stderr_line(f"vramtui: cannot save the session in {folder}: {exc.strerror or exc}")
        return False
    return written


def prepare(args: argparse.Namespace) -> ResolvedRun:
    """Everything checked before anything runs: the spec, the device, the files."""
    check_outputs(args.csv, args.json, args.force)
    resolved = say_variant(resolve(build_spec(args), device_inventory.available()))
    check_ram(resolved, args.no_ram_check)
    return with_snapshot(resolved, args, args.json or args.csv)


def run(args: argparse.Namespace) -> int:
    folder = check_out(args.out)  # where the session is kept, checked before anything runs
    launch = tp_launch_of(args)
    if launch is not None:
        from vramtui.commands.run_tp import run_tp

        return run_tp(args, launch, folder)
    resolved = prepare(args)
    recorder = Recorder.for_run(resolved)
    progress = Progress(recorder.session, enabled=not args.quiet)
    _, interrupted = run_in_thread(
        lambda: recorder.run(progress), lambda signal: recorder.cancel(signal.reason)
    )
    if interrupted:
        recorder.session.fail(ev.Failed("cancelled", interrupted.reason, "start"))
    view = recorder.session.snapshot()
    failure = view.failure
    if failure and failure.kind == "usage" and not view.tokens_done:
        # Found by the engine before it ran (a GPU that NVML could not count): nothing
        # was measured, so nothing is written.
        raise UsageError(failure.message, field="device")
    saved = keep(view, args.csv, args.json, folder)
    print(summary_text(typed_summary(view), placed_estimates(view)))
    if failure and view.status != "cancelled":
        stderr_line(f"vramtui: run {view.status}: {failure.kind}: {failure.message}")
    code = exit_code(view, interrupted is not None)
    return EXIT_FAILED if code == EXIT_OK and not saved else code
