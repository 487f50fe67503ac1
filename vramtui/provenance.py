"""Where a result came from: the command line as run and the checkout vramtui runs from.

Pure standard library, at the bottom of the package: a session's environment records
both, and the benchmark scripts stamp their results with the same.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent  # the folder above the package


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None: git absent, or not a repository
    dirty: bool | None  # tracked files changed since the commit


def git_state(repo: Path = CHECKOUT) -> GitState:
    """The commit checked out in `repo` and whether its tracked files have changed."""
    if not (repo / ".git").exists():  # an installed package, not a checkout
        return GitState(None, None)
    try:
        head = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # git absent, or not a repository
        return GitState(None, None)
    return GitState(head.strip(), bool(status.strip()))


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout


def command_line(argv: list[str] | None = None) -> str:
    """The command as a shell would take it back: `vramtui run -m opt-125m ...`."""
    args = list(sys.argv if argv is None else argv)
    if args and Path(args[0]).name in ("vramtui", "__main__.py"):
        args[0] = "vramtui"
    return shlex.join(args)
