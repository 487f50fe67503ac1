"""`vramtui models [FILTER]`: the catalogue, by family, with hub ids and sizes."""

from __future__ import annotations

import argparse
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.catalogue import families
from vramtui.report.tables import table
from vramtui.units import format_bytes, format_count


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models", help="list the catalogue (short names, hub ids, parameters)"
    )
    parser.add_argument(
        "filter", nargs="?", default="", help="only models whose name, hub id or family has this"
    )
    parser.set_defaults(command=run)


def catalogue_text(text: str = "") -> str:
    blocks = []
    for family, entries in families().items():
        rows = [
            (e.name, e.hub_id, format_count(e.params), format_bytes(e.weights_bytes(2)))
            for e in entries
            if e.matches(text)
        ]
        if rows:
            header = ("model", "hub id", "params", "fp16 weights")
            blocks.append(f"{family}\n{table(rows, header)}")
    return "\n\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    text = catalogue_text(args.filter)
    if not text:
        raise UsageError(f"no catalogue model matches {args.filter!r}")
    print(text)
    return 0
