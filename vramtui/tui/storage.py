"""Where the app keeps sessions and screenshots, and how it names them.

Every run is saved (CSV + JSON) when it ends, completed or not, under a
timestamped name that never replaces an existing file. Exports go where the
user says, and replace a file only when the user has confirmed it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vramtui.export import write_csv, write_json
from vramtui.session import Session

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sessions_dir(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    home: Path | None = None,
) -> Path:
    """The user's data folder for vramtui sessions (XDG on Linux, Application Support on macOS)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if platform == "darwin":
        return home / "Library" / "Application Support" / "vramtui" / "sessions"
    base = environ.get("XDG_DATA_HOME")
    root = Path(base) if base and Path(base).is_absolute() else home / ".local" / "share"
    return root / "vramtui" / "sessions"


def safe_name(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "run"


def session_stem(session: Session | None, when: datetime) -> str:
    """e.g. 20260126-143005-opt-1.3b-cuda0: sortable by time, says what ran where."""
    stamp = when.strftime("%Y%m%d-%H%M%S")
    if session is None:
        return f"vramtui-{stamp}"
    device = str(session.environment.get("device") or session.spec.get("device") or "")
    model = str(session.spec.get("model") or "run")
    return safe_name(f"{stamp}-{model}-{device.replace(':', '')}")


def free_stem(folder: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """`stem`, or stem-2, stem-3... so that no file stem+suffix exists in `folder`."""
    candidate, n = stem, 1
    while any((folder / f"{candidate}{suffix}").exists() for suffix in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


@dataclass(frozen=True)
class Saved:
    csv: Path
    json: Path


def autosave(session: Session, folder: Path, when: datetime) -> Saved:
    """Write the session's CSV and JSON under a new timestamped name in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = free_stem(folder, session_stem(session, when), (".csv", ".json"))
    csv_path = write_csv(session, folder / f"{stem}.csv")
    json_path = write_json(session, folder / f"{stem}.json")
    return Saved(csv_path, json_path)


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


def export(session: Session, targets: list[Path]) -> list[Path]:
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
