"""`vramtui profile SCRIPT [ARGS...]` (or `-m MODULE`): the memory of the user's own program.

The program runs unchanged in a fresh process with vramtui's hooks installed
before its first line; every generate() it makes is recorded token by token.
Its output passes through; vramtui's own lines go to stderr; its exit code is
vramtui's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramtui.commands.headless import run_in_thread, stderr_line
from vramtui.commands.out_option import add_out_argument, check_out
from vramtui.commands.run import check_outputs, keep, save
from vramtui.errors import EXIT_INTERRUPTED
from vramtui.measure import events as ev
from vramtui.measure.recorder import Recorder
from vramtui.measure.script.program_process import Program, program_from
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import typed_summary
from vramtui.report.summary_text import summary_text
from vramtui.units import format_bytes


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="profile your own program: every generate() it makes, token by token",
        description=(
            "Run SCRIPT (or -m MODULE) unchanged in a fresh process with vramtui's "
            "sampling installed, and record the memory of its whole life: model loads, "
            "and every generate() call token by token."
        ),
    )
    parser.add_argument("--csv", metavar="FILE", help="write every sample as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    add_out_argument(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing export files")
    parser.add_argument("--live", action="store_true", help="watch it in the app")
    parser.add_argument("--quiet", "-q", action="store_true", help="no line per generate() call")
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]")
    parser.set_defaults(command=run)


def program_of(args: argparse.Namespace) -> Program:
    """The program to run, checked: the script exists, or the module can be found."""
    return program_from(list(args.argv), args.module)


def generation_line(view: SessionView, g: ev.Generation) -> str:
    beams = f" × {g.num_beams} beams" if g.num_beams > 1 else ""
    return (
        f"vramtui: generate() #{g.index}: {g.model_class}, batch {g.batch}{beams}, "
        f"prompt {g.prompt_tokens}, {g.tokens_generated} new tokens, "
        f"peak allocated {format_bytes(g.peak_allocated_bytes, 2)}"
        + ("" if g.status == "completed" else f" ({g.status})")
    )


def program_exit_code(code: int | None, view: SessionView, interrupted: bool) -> int:
    """The program's exit code; 130 for Ctrl+C; 128+N for a program killed by signal N."""
    if interrupted or view.status == "cancelled":
        return EXIT_INTERRUPTED
    if code is None:
        return 1
    return 128 - code if code < 0 else code


def run(args: argparse.Namespace) -> int:
    program = program_of(args)
    check_outputs(args.csv, args.json, args.force)
    folder = check_out(args.out)
    if args.live:
        return run_live(program, args, folder)
    recorder = Recorder.for_program(program)

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Generation) and not args.quiet:
            stderr_line(generation_line(recorder.session.snapshot(), event))

    _, interrupted = run_in_thread(
        lambda: recorder.run(on_event), lambda signal: recorder.cancel(signal.reason)
    )
    if interrupted:
        recorder.session.fail(ev.Failed("cancelled", interrupted.reason, "start"))
    view = recorder.session.snapshot()
    written = keep(view, args.csv, args.json, folder)
    stderr_line(summary_text(typed_summary(view)))
    code = program_exit_code(recorder.exit_code, view, interrupted is not None)
    return code if code or written else 1


def run_live(program: Program, args: argparse.Namespace, folder: Path) -> int:
    """The app's run screen on the program; its output in the log panel."""
    from vramtui.commands.app_command import run_app
    from vramtui.tui.profile_app import ProfileApp

    made: list[Recorder] = []

    def make(on_output: Callable[[str], None]) -> Recorder:
        made.append(Recorder.for_program(program, capture=True, on_output=on_output))
        return made[0]

    app = ProfileApp(make, out_dir=folder)  # saves the session there when the program ends
    interrupted = run_app(app) == EXIT_INTERRUPTED  # and says where
    if not made:
        return 1
    view = made[0].session.snapshot()
    written = save(view, args.csv, args.json)
    code = program_exit_code(made[0].exit_code, view, interrupted)
    return code if code or written else 1
