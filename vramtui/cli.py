"""Command line: `vramtui` (the app) and its commands (run, bench, estimate, show, ...)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from vramtui import __version__
from vramtui.commands import common
from vramtui.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, UsageError

# Each module in vramtui.commands with `add_parser(subparsers)`; imported lazily
# so `vramtui --help` and the app never pay for the others.
SUBCOMMANDS = (
    "run", "train", "bench", "estimate", "fit", "show", "compare", "models", "profile",
)  # fmt: skip


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


def is_app(args: Sequence[str]) -> bool:
    """No command word (nothing, or options first): the app, with its own flags."""
    return not args or args[0].startswith("-")


def run_app(args_list: list[str]) -> int:
    from vramtui.commands import app_command

    return int(app_command.run(app_command.build_parser(SUBCOMMANDS).parse_args(args_list)))


def dispatch(args_list: list[str]) -> int:
    if is_app(args_list):
        return run_app(args_list)
    if args_list[0] not in SUBCOMMANDS:
        raise UsageError(
            f"unknown command {args_list[0]!r}; commands: {', '.join(SUBCOMMANDS)} "
            "(or none, for the app)"
        )
    parser = build_parser()
    args = parser.parse_args(args_list)
    return int(args.command(args))


def quiet_stdout() -> None:
    """stdout's reader is gone: what is still buffered goes nowhere, so that Python's
    flush at exit raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no file descriptor (a test's captured stdout): nothing is flushed at exit


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            return run_command(args_list)
        finally:
            sys.stdout.flush()  # a closed pipe is found here (--help too), not at exit
    except BrokenPipeError:  # `vramtui ... | head -1`: the reader has all it wanted
        quiet_stdout()
        return EXIT_BROKEN_PIPE


def run_command(args_list: list[str]) -> int:
    try:
        return dispatch(args_list)
    except UsageError as exc:
        print(f"vramtui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
