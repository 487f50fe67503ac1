"""A session records where it came from: the command line and vramtui's checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vramtui.measure.environment import Environment
from vramtui.measure.recorder import base_environment
from vramtui.provenance import CHECKOUT, command_line, git_state


def test_the_command_line_reads_as_typed() -> None:
    argv = ["/venv/bin/vramtui", "run", "-m", "opt-125m", "--prompt", "two words"]
    assert command_line(argv) == "vramtui run -m opt-125m --prompt 'two words'"


def test_outside_a_checkout_there_is_no_commit(tmp_path: Path) -> None:
    state = git_state(tmp_path)
    assert (state.commit, state.dirty) == (None, None)


def test_a_checkout_gives_its_commit_and_whether_it_changed(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True)
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "f.txt").write_text("one\n")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert git_state(tmp_path).commit == head and git_state(tmp_path).dirty is False
    (tmp_path / "f.txt").write_text("two\n")
    assert git_state(tmp_path).dirty is True


def test_a_sessions_environment_records_the_command_and_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["vramtui", "run", "-n", "5"])
    env = base_environment()
    assert env.command == "vramtui run -n 5"
    assert env.vramtui_commit == git_state(CHECKOUT).commit
    saved = env.to_dict()
    assert saved["command"] == "vramtui run -n 5"
    assert Environment.from_dict(saved) == env  # read back as written, a clean tree too
