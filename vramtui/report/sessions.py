"""Where sessions are kept, and how they are named.

Every run of the app is saved (CSV + JSON) when it ends, completed or not,
under a timestamped name that never replaces an existing file; a headless run
whose own files cannot be written is saved there too, so nothing measured is lost.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vramtui.measure.session import SessionView
from vramtui.report.export import write_csv, write_json
from vramtui.runspec import RunSpec

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


def session_stem(session: SessionView | None, when: datetime) -> str:
    """e.g. 20260126-143005-opt-1.3b-cuda0: sortable by time, says what ran where."""
    stamp = when.strftime("%Y%m%d-%H%M%S")
    if session is None:
        return f"vramtui-{stamp}"
    spec = session.spec
    device = session.environment.device or (spec.device if isinstance(spec, RunSpec) else "")
    model = spec.model or "run"
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


def autosave(view: SessionView, folder: Path, when: datetime) -> Saved:
    """Write the session's CSV and JSON under a new timestamped name in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = free_stem(folder, session_stem(view, when), (".csv", ".json"))
    csv_path = write_csv(view, folder / f"{stem}.csv")
    json_path = write_json(view, folder / f"{stem}.json")
    return Saved(csv_path, json_path)
