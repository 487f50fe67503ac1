"""Exports the user asks for from the app, and how paths read on screen.

Exports go where the user says, and replace a file only when the user has
confirmed it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vramtui.measure.session import SessionView
from vramtui.report.export import write_csv, write_json


def export_targets(text: str) -> list[Path]:
    """The files an export to `text` writes: one for a .csv or .json name, else both."""
    path = Path(text.strip()).expanduser()
    if path.suffix.lower() in (".csv", ".json"):
        return [path]
    return [path.with_name(path.name + ".csv"), path.with_name(path.name + ".json")]


def check_targets(targets: list[Path]) -> tuple[str | None, list[Path]]:
    """(a problem that no confirmation can fix, or None; the targets that exist)."""
    for target in targets:
        if not target.name or target.is_dir():
            return f"{target} is a folder; give a file name", []
        parent = target.parent
        if not parent.is_dir():
            return f"folder {parent} does not exist", []
        if not os.access(parent, os.W_OK):
            return f"folder {parent} is not writable", []
    return None, [t for t in targets if t.exists()]


def export(session: SessionView, targets: list[Path]) -> list[Path]:
    for target in targets:
        if target.suffix.lower() == ".csv":
            write_csv(session, target)
        else:
            write_json(session, target)
    return targets


def display_path(path: Path) -> str:
    """A path as a person reads it: under the home folder as ~/..."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
