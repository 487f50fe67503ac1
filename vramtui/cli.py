"""Command line: `vramtui` (the app), `vramtui run`, `vramtui estimate`, `vramtui bench`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vramtui import __version__
from vramtui.commands import common
from vramtui.errors import EXIT_USAGE, UsageError

import importlib

# Each module in vramtui.commands with `add_parser(subparsers)`; imported lazily
# so `vramtui --help` and the app never pay for the others.
SUBCOMMANDS = ("run", "bench")


def build_parser() -> common.ArgumentParser:
    parser = common.ArgumentParser(
        prog="vramtui",
        description="Live GPU-memory profiler for transformer text generation.",
    )
    parser.add_argument("--version", action="version", version=f"vramtui {__version__}")
    subparsers = parser.add_subparsers(title="commands", parser_class=common.ArgumentParser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"vramtui.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        command = getattr(args, "command", None)
        if command is None:
            raise UsageError("the app is not available yet; use `vramtui run`")
        return int(command(args))
    except UsageError as exc:
        print(f"vramtui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
