"""Every run is kept: `vramtui run` saves each session in the sessions folder (or --out DIR),
completed or interrupted, and says where; --out is checked alike by the app, run and profile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, run_cli

from vramtui.commands.out_option import check_out
from vramtui.errors import UsageError

PROGRAM = Path(__file__).parent / "fixtures" / "program.py"
TINY_RUN = ("run", "--config", str(TINY_CONFIG), "--device", "cpu", "-q")


def kept(folder: Path) -> list[dict[str, object]]:
    """The sessions in `folder`, each as CSV and JSON."""
    summaries = sorted(folder.glob("*.json"))
    assert [p.with_suffix(".csv").exists() for p in summaries] == [True] * len(summaries)
    return [json.loads(p.read_text()) for p in summaries]


@pytest.mark.slow
@pytest.mark.engine
def test_a_run_without_export_files_is_kept_in_the_sessions_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code, out, err = run_cli(capsys, *TINY_RUN, "--tokens", "4")
    assert code == 0, err
    folder = tmp_path / "data" / "vramtui" / "sessions"
    (summary,) = kept(folder)
    assert summary["status"] == "completed" and summary["tokens_generated"] == 4
    (csv_path,) = folder.glob("*.csv")
    assert f"vramtui: session saved in {csv_path} and {csv_path.stem}.json" in err
    assert "Peak memory" in out


@pytest.mark.slow
@pytest.mark.engine
def test_out_keeps_the_session_there_beside_the_files_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    out = tmp_path / "new"  # made: its parent exists
    files = ("--json", str(tmp_path / "run.json"))
    code, _, err = run_cli(capsys, *TINY_RUN, "--tokens", "4", "--out", str(out), *files)
    assert code == 0, err
    assert kept(out)[0]["status"] == "completed"
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"
    assert not (tmp_path / "data").exists()  # --out, not the default folder
    assert str(out) in err


@pytest.mark.slow
@pytest.mark.engine
def test_an_interrupted_run_without_export_files_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "sessions"
    cmd = [sys.executable, "-m", "vramtui", *TINY_RUN[:-1], "--tokens", "100", "--out", str(out)]
    env = dict(os.environ, VRAMTUI_TEST_STEP_SLEEP="0.2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:  # off a terminal, a progress line at each phase
        if " decode " in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (summary,) = kept(out)
    assert summary["status"] == "cancelled" and summary["tokens_generated"] > 0
    assert "vramtui: session saved in" in err


@pytest.mark.usefixtures("no_textual")
@pytest.mark.parametrize(
    "command",
    [
        ["--config", str(TINY_CONFIG), "--device", "cpu", "--tokens", "4"],  # the app
        list(TINY_RUN),
        ["profile"],  # the program last: what follows it is its own
    ],
    ids=["app", "run", "profile"],
)
def test_out_inside_a_missing_folder_is_refused_before_anything_runs(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing" / "dir"
    program = [str(PROGRAM)] if command == ["profile"] else []
    code, _, err = run_cli(capsys, *command, "--out", str(missing), *program)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == f"vramtui: --out {missing}: folder {missing.parent} does not exist"
    assert not (tmp_path / "missing").exists()


def test_out_may_name_a_new_folder_inside_one_that_exists(tmp_path: Path) -> None:
    assert check_out(str(tmp_path / "new")) == tmp_path / "new"
    assert check_out(str(tmp_path)) == tmp_path
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="--out must be a folder"):
        check_out(str(tmp_path / "file"))


@pytest.mark.slow
@pytest.mark.engine
def test_a_run_whose_stderr_reader_goes_away_is_still_measured_and_kept(tmp_path: Path) -> None:
    """`vramtui run ... 2>&1 | head -2`: the progress lines that follow go nowhere, and
    the run completes and is kept."""
    out = tmp_path / "sessions"
    cmd = [sys.executable, "-m", "vramtui", *TINY_RUN[:-1], "--tokens", "12", "--out", str(out)]
    env = dict(os.environ, VRAMTUI_TEST_STEP_SLEEP="0.1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None and proc.stdout is not None
    proc.stderr.readline()  # the first progress line; every later one meets a closed pipe
    proc.stderr.close()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, stdout
    (summary,) = kept(out)
    assert summary["status"] == "completed" and summary["tokens_generated"] == 12
    assert "peak" in stdout.lower()  # the summary table still reaches stdout
