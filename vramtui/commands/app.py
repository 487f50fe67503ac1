"""`vramtui` with no command: the interactive app.

The flags are checked exactly as `vramtui run` checks them, before Textual
starts. Textual (and the app) are imported only then, so `vramtui run` and the
other commands never pay for them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vramtui import __version__
from vramtui.commands.common import ArgumentParser, add_spec_arguments, build_spec, say_variant
from vramtui.commands.snapshot_option import add_snapshot_argument, check_cuda
from vramtui.errors import UsageError
from vramtui.measure import device_inventory
from vramtui.runspec import resolve

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
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="save sessions and screenshots here (default: the user's data folder, "
        "e.g. ~/.local/share/vramtui/sessions)",
    )
    return parser


def out_dir(text: str) -> Path:
    """The --out folder, made if missing; a UsageError if it cannot be written."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out must be a folder: {text} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make --out folder {text}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"--out folder {text} is not writable")
    return path


def run(args: argparse.Namespace) -> int:
    found = device_inventory.available()
    resolved = say_variant(resolve(build_spec(args), found))  # exactly as `vramtui run` checks them
    if args.snapshot:
        check_cuda(resolved)
    out = out_dir(args.out) if args.out else None
    from vramtui.tui.app import VramApp

    app = VramApp(resolved.spec, start=args.start, out_dir=out, snapshot=args.snapshot)
    app.run()
    return app.return_code or 0
