"""`vramtui` with no command: the interactive app.

The flags are checked exactly as `vramtui run` checks them, before Textual
starts. Textual (and the app) are imported only then, so `vramtui run` and the
other commands never pay for them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vramtui import __version__
from vramtui.commands.common import ArgumentParser, add_spec_arguments, build_spec, say_variant
from vramtui.commands.headless import interrupts_to, stderr_line
from vramtui.commands.out_option import add_out_argument, make_out, saved_line
from vramtui.commands.snapshot_option import add_snapshot_argument, check_cuda
from vramtui.measure import device_inventory
from vramtui.runspec import resolve

if TYPE_CHECKING:
    from vramtui.tui.app import VramApp

EPILOG = (
    "Without a command, vramtui opens the app; the flags prefill its form "
    "(and --start runs it at once). Headless: `vramtui run --help`."
)


def build_parser(commands: tuple[str, ...] = ()) -> ArgumentParser:
    listed = f" Commands: {', '.join(commands)}." if commands else ""
    parser = ArgumentParser(
        prog="vramtui",
        description="Live GPU-memory profiler for transformer text generation.",
        epilog=EPILOG + listed,
    )
    parser.add_argument("--version", action="version", version=f"vramtui {__version__}")
    add_spec_arguments(parser)
    parser.add_argument("--start", action="store_true", help="begin the run at once")
    add_snapshot_argument(parser)
    add_out_argument(
        parser,
        "save sessions and screenshots here (made if missing, inside a folder that exists; "
        "default: the user's data folder, e.g. ~/.local/share/vramtui/sessions)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    found = device_inventory.available()
    resolved = say_variant(resolve(build_spec(args), found))  # exactly as `vramtui run` checks them
    if args.snapshot:
        check_cuda(resolved)
    out = make_out(args.out) if args.out else None
    from vramtui.tui.app import VramApp
    from vramtui.tui.run_state import train_estimate

    app = VramApp(
        resolved.spec, start=args.start, out_dir=out, snapshot=args.snapshot,
        predictor=train_estimate,
    )  # fmt: skip
    return run_app(app)


def run_app(app: VramApp) -> int:
    """Run the app as headless commands run: Ctrl+C (a key in the app), SIGINT, SIGTERM
    and SIGHUP cancel a run, save its partial session and leave with exit code 130, the
    terminal restored by Textual on the way out; then one line says where the sessions
    went."""
    with interrupts_to(lambda signal: app.interrupt_from_signal(signal.reason)):
        app.run()
    say_where_saved(app)
    return app.return_code or 0


def say_where_saved(app: VramApp) -> None:
    """The last session's file on stderr (the terminal is the shell's again), or why it
    could not be saved. A terminal already gone (SIGHUP) takes no line."""
    run = app.current
    if run is not None and run.save_error is not None:
        line = f"vramtui: could not save the session: {run.save_error}"
    elif app.saved_sessions:
        line = saved_line(app.saved_sessions[-1], len(app.saved_sessions))
    else:
        return
    try:
        stderr_line(line)
        sys.stderr.flush()
    except OSError:
        pass
