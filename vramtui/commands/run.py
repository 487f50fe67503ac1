"""`vramtui run`: one headless run with a progress bar and a peak summary."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from vramtui import events as ev
from vramtui.commands.common import add_spec_arguments, run_in_thread, spec_from_args, stderr_line
from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_OOM, EXIT_USAGE
from vramtui.export import check_writable, write_csv, write_json
from vramtui.recorder import Recorder
from vramtui.report import summary_text
from vramtui.session import Session
from vramtui.units import format_bytes


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="one headless run: progress, peak summary, CSV/JSON")
    add_spec_arguments(parser)
    parser.add_argument("--csv", metavar="FILE", help="write every sample as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite existing export files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(command=run)


class Progress:
    """token i/N, tok/s and current memory on one stderr line, at most 10 times a second."""

    def __init__(self, session: Session, enabled: bool) -> None:
        self.session = session
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._last_line = ""

    def __call__(self, event: ev.Event) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = isinstance(event, (ev.Done, ev.Failed))
        if not final and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        self.draw(final)

    def draw(self, final: bool = False) -> None:
        s = self.session
        total = int(s.spec.get("tokens") or 0)
        done = s.tokens_done
        width = 24
        filled = int(width * done / total) if total else 0
        rate = s.live_tokens_per_s()
        memory = s.latest("nvml_process") or s.latest("reserved") or s.latest("allocated")
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {s.current_phase:<7} "
            f"token {done}/{total}  {rate or 0:6.1f} tok/s  {format_bytes(memory)}"
        )
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self._last_line = line


def exit_code(session: Session, interrupted: bool) -> int:
    if interrupted or session.status == "cancelled":
        return EXIT_INTERRUPTED
    if session.status == "completed":
        return EXIT_OK
    failure = session.failure
    if failure and failure.kind == "oom":
        return EXIT_OOM
    if failure and failure.kind == "usage":
        return EXIT_USAGE
    return EXIT_FAILED


def save(session: Session, csv_path: str | None, json_path: str | None) -> None:
    if csv_path:
        write_csv(session, csv_path)
    if json_path:
        write_json(session, json_path)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    for path in (args.csv, args.json):
        if path:
            check_writable(path, force=args.force)
    recorder = Recorder(spec)
    progress = Progress(recorder.session, enabled=not args.quiet)
    session, interrupted = run_in_thread(lambda: recorder.run(progress), recorder.cancel)
    session = session or recorder.session
    if interrupted:
        session.fail(ev.Failed("cancelled", f"interrupted ({interrupted})", session.current_phase))
    save(session, args.csv, args.json)
    failure = session.failure
    if failure and failure.kind == "usage":
        stderr_line(f"vramtui: {failure.message}")
        return EXIT_USAGE
    print(summary_text(session.summary()))
    if failure and session.status != "cancelled":
        stderr_line(f"vramtui: run {session.status}: {failure.kind}: {failure.message}")
    return exit_code(session, interrupted is not None)
