"""The app in a real terminal under SIGTERM, SIGHUP and Ctrl+C, and `q` mid-run: the run
is cancelled, its partial session saved, the terminal restored, exit code 130."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CPU_ONLY, TINY_CONFIG
from textual.widgets import Input

from vramtui.commands.app_command import say_where_saved
from vramtui.report.sessions import Saved
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.app import VramApp

ROOT = Path(__file__).parent.parent
PROGRAM = Path(__file__).parent / "fixtures" / "program.py"
# Leaving the alternate screen, and mouse tracking off: what Textual writes on its way out.
RESTORE = (b"\x1b[?1049", b"\x1b[?1000")
Act = Callable[[subprocess.Popen[bytes], int], None]


def in_terminal(
    cmd: list[str], progress: bytes, act: Act, timeout: float = 240
) -> tuple[int, bytes]:
    """Run `cmd` on a pseudo-terminal of 80x24, reading all it writes; once `progress`
    has been written, `act(process, terminal)`. (exit code, every byte written)."""
    terminal, child_end = os.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", VRAMTUI_TEST_STEP_SLEEP="0.2")
    proc = subprocess.Popen(
        cmd, stdin=child_end, stdout=child_end, stderr=child_end, env=env, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    os.close(child_end)
    written, acted = bytearray(), False
    deadline = time.monotonic() + timeout  # bounds a hang; progress is what the test waits on
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                try:
                    data = os.read(terminal, 65536)
                except OSError:  # EIO: every process has closed the terminal
                    data = b""
                written += data
                if not data and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
            if not acted and progress in written:
                act(proc, terminal)
                acted = True
        assert acted, f"no {progress!r} on the screen: {bytes(written[-2000:])!r}"
        return proc.wait(timeout=30), bytes(written)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(terminal)


def send(how: str) -> Act:
    if how == "ctrl+c":  # a key in the app's raw terminal, not a signal
        return lambda proc, terminal: os.write(terminal, b"\x03")
    return lambda proc, terminal: proc.send_signal(getattr(signal, how))


def assert_restored(written: bytes) -> bytes:
    """Every mode the app set on the terminal is unset after it; what follows, returned."""
    for mode in RESTORE:
        assert written.rfind(mode + b"h") < written.rfind(mode + b"l"), mode
    return written[written.rfind(RESTORE[0] + b"l") :]


def assert_saved_cancelled(out: Path, reason: str, after: bytes) -> dict[str, object]:
    (summary_path,) = out.glob("*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "cancelled"
    assert summary["failure"]["message"] == reason
    assert summary["tokens_generated"] > 0
    with open(summary_path.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= summary["tokens_generated"]
    said = after.decode(errors="replace")
    assert f"vramtui: session saved in {summary_path.with_suffix('.csv')}" in said
    return summary


@pytest.mark.slow
@pytest.mark.engine
@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("SIGTERM", "interrupted by SIGTERM"),
        ("SIGHUP", "interrupted by SIGHUP"),
        ("ctrl+c", "interrupted by SIGINT"),
    ],
)
def test_the_app_interrupted_mid_run_saves_restores_and_exits_130(
    tmp_path: Path, how: str, reason: str
) -> None:
    out = tmp_path / "sessions"
    app = [sys.executable, "-m", "vramtui", "--config", str(TINY_CONFIG), "--device", "cpu"]
    cmd = [*app, "--tokens", "100", "--start", "--out", str(out)]
    code, written = in_terminal(cmd, b"decode", send(how))  # the phase, on the run screen
    assert code == 130, written[-2000:]
    assert_saved_cancelled(out, reason, assert_restored(written))


@pytest.mark.slow
@pytest.mark.engine
def test_profile_live_under_sigterm_saves_restores_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "sessions"
    program = [str(PROGRAM), str(TINY_CONFIG), str(tmp_path / "checkpoint"), "slow"]
    cmd = [sys.executable, "-m", "vramtui", "profile", "--live", "--out", str(out), *program]
    code, written = in_terminal(cmd, b"decode", send("SIGTERM"))
    assert code == 130, written[-2000:]
    assert_saved_cancelled(out, "interrupted by SIGTERM", assert_restored(written))


# ---- keys, in the app driven by Textual's pilot (a replayed run: no engine) ----------------------
def held_app(out: Path, start: bool = True) -> VramApp:
    """The app on a replay that holds at token 20 until cancelled, as a generation going on."""
    items = synthetic_run("opt-125m", 100, upto=20, backend="cpu")
    return VramApp(
        RunSpec(tokens=100),
        start=start,
        out_dir=out,
        make_recorder=lambda run: ReplayRecorder(run, items, hold=True),
        list_devices=lambda: CPU_ONLY,
    )


def leave_by(app: VramApp, *keys: str, mid_run: bool = True) -> None:
    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 60
            while mid_run and not (app.current and app.current.session.snapshot().tokens_done):
                assert time.monotonic() < deadline, "the run never started"
                await pilot.pause(0.05)
            await pilot.press(*keys)
            while app.is_running and time.monotonic() < deadline:
                await pilot.pause(0.05)

    asyncio.run(scenario())


def saved_summary(out: Path) -> dict[str, object]:
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("key", "reason"), [("ctrl+c", "interrupted by SIGINT"), ("q", "cancelled by the user")]
)
def test_ctrl_c_or_q_mid_run_cancels_saves_and_exits_130(
    tmp_path: Path, key: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = held_app(tmp_path)
    leave_by(app, key)
    assert app.return_code == 130
    summary = saved_summary(tmp_path)
    assert summary["status"] == "cancelled" and summary["tokens_generated"] == 20
    assert summary["failure"]["message"] == reason  # type: ignore[index]
    say_where_saved(app)  # what `vramtui` prints once the app has closed
    (csv_path,) = tmp_path.glob("*.csv")
    assert (
        capsys.readouterr().err
        == f"vramtui: session saved in {csv_path} and {csv_path.stem}.json\n"
    )


def test_ctrl_c_in_a_text_field_quits_too(tmp_path: Path) -> None:
    app = held_app(tmp_path, start=False)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.screen.query_one("#tokens", Input).focus()
            await pilot.press("ctrl+c")  # an Input binds it to copy; the app's comes first
            await pilot.pause()

    asyncio.run(scenario())
    assert app.return_code == 130
    assert not list(tmp_path.glob("*.json"))  # no run, nothing to save


def test_q_after_the_run_has_ended_exits_0(tmp_path: Path) -> None:
    items = synthetic_run("opt-125m", 20, backend="cpu")
    app = VramApp(
        RunSpec(tokens=20),
        start=True,
        out_dir=tmp_path,
        make_recorder=lambda run: ReplayRecorder(run, items),
        list_devices=lambda: CPU_ONLY,
    )

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 60
            while not (app.current and app.current.ended):
                assert time.monotonic() < deadline, "the run never ended"
                await pilot.pause(0.05)
            await pilot.press("q")

    asyncio.run(scenario())
    assert app.return_code == 0
    assert saved_summary(tmp_path)["status"] == "completed"


def test_a_signal_before_the_app_has_started_is_acted_on_once_it_has(tmp_path: Path) -> None:
    app = held_app(tmp_path, start=False)
    app.interrupt_from_signal("interrupted by SIGTERM")  # no event loop yet
    leave_by(app, mid_run=False)
    assert app.return_code == 130


def test_after_several_runs_the_line_names_the_folder_and_the_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = held_app(tmp_path)
    app.saved_sessions = [
        Saved(tmp_path / f"{stem}.csv", tmp_path / f"{stem}.json") for stem in ("a", "b")
    ]
    say_where_saved(app)
    assert (
        capsys.readouterr().err == f"vramtui: 2 sessions saved in {tmp_path}, the last as b.json\n"
    )


def test_a_session_that_could_not_be_saved_is_said_once_the_app_has_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # the sessions folder's place is taken by a file
    app = held_app(blocked)
    leave_by(app, "q")
    assert app.return_code == 130
    say_where_saved(app)
    err = capsys.readouterr().err
    assert err.startswith("vramtui: could not save the session: ") and str(blocked) in err
