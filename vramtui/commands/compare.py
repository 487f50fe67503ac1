"""`vramtui compare A B [C...]`: saved sessions side by side (peaks, breakdown, change);
with --app, overlaid on one token axis in the app."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare saved sessions: peaks, breakdown and the change from the first",
        description="Compare two or more saved sessions (their .json or .csv as vramtui "
        "wrote them); the first is the base every change is measured from.",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="a session's .json or .csv, or a bench CSV"
    )
    parser.add_argument(
        "--app", action="store_true", help="open them in the app, overlaid on one token axis"
    )
    parser.set_defaults(command=run)


def load(files: list[str]) -> list[Any]:
    """The sessions (a bench CSV gives one a measured cell), labelled; one clear
    UsageError for the first file that is neither."""
    from vramtui.analysis.run_comparison import labelled
    from vramtui.report.bench_cells import bench_views, is_bench_csv
    from vramtui.report.saved import load_view

    views, paths = [], []
    for path in (Path(f).expanduser() for f in files):
        found = bench_views(path) if is_bench_csv(path) else [load_view(path)]
        views += found
        paths += [path] * len(found)
    if len(views) < 2:
        raise UsageError("compare needs at least two sessions (or a bench CSV of several cells)")
    return labelled(views, paths)


def run(args: argparse.Namespace) -> int:
    items = load(args.files)
    if args.app:
        from vramtui.tui.compare_app import CompareApp

        CompareApp(items).run()
        return 0
    from vramtui.report.comparison_text import compare_text

    print(compare_text(items))
    return 0
