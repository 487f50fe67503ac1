"""`--out DIR` on the app, `vramtui run` and `vramtui profile`: where sessions are kept,
checked the same way for all three before anything runs, and the line that says where a
session went."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vramtui.errors import UsageError
from vramtui.report.sessions import Saved, sessions_dir

OUT_HELP = (
    "keep sessions here (made if missing, inside a folder that exists; default: the user's "
    "data folder, e.g. ~/.local/share/vramtui/sessions)"
)


def add_out_argument(parser: argparse.ArgumentParser, help: str = OUT_HELP) -> None:
    parser.add_argument("--out", metavar="DIR", help=help)


def check_out(text: str | None) -> Path:
    """The folder sessions go to: --out, else the sessions folder. --out may name a folder
    that does not exist yet, inside one that does (it is made when the first session is
    saved); anything else is a UsageError, so nothing runs."""
    if not text:
        return sessions_dir()
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out must be a folder: {text} is a file")
    existing = path if path.is_dir() else path.absolute().parent
    if not existing.is_dir():
        raise UsageError(f"--out {text}: folder {existing} does not exist")
    if not os.access(existing, os.W_OK):
        raise UsageError(f"--out {text}: folder {existing} is not writable")
    return path


def make_out(text: str) -> Path:
    """check_out's folder, made now (the app saves screenshots there before any run)."""
    path = check_out(text)
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make --out folder {text}: {exc.strerror or exc}") from None
    return path


def saved_line(saved: Saved, count: int = 1) -> str:
    """Where the session went, as the commands say it on stderr once they have ended."""
    if count > 1:
        folder, name = saved.json.parent, saved.json.name
        return f"vramtui: {count} sessions saved in {folder}, the last as {name}"
    return f"vramtui: session saved in {saved.csv} and {saved.json.name}"
