"""Faults with real signals and real processes: nothing measured is lost."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import TINY_CONFIG

pytestmark = pytest.mark.engine  # every test here runs real engines


def headless(tmp_path: Path, tokens: int, *extra: str) -> list[str]:
    """`vramtui run` of the tiny model on the CPU, exporting run.csv and run.json."""
    return [
        *(sys.executable, "-m", "vramtui", "run", "--config", str(TINY_CONFIG)),
        *("--device", "cpu", "--tokens", str(tokens)),
        *("--csv", str(tmp_path / "run.csv"), "--json", str(tmp_path / "run.json"), *extra),
    ]


def start_headless(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    # a step every 0.5 s: the signal a test sends once the decode has begun lands
    # long before the 100 tokens are done, however busy the machine
    env = dict(os.environ, VRAMTUI_TEST_STEP_SLEEP="0.5", PYTHONUNBUFFERED="1")
    cmd = headless(tmp_path, 100, *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def engine_children(pid: int) -> list[psutil.Process]:
    try:
        return [
            p
            for p in psutil.Process(pid).children(recursive=True)
            if "vramtui.measure.engine.engine_main" in " ".join(p.cmdline())
        ]
    except psutil.NoSuchProcess:
        return []


def wait_for_decode(proc: subprocess.Popen[str], timeout: float = 120) -> int:
    """Read the progress lines (off a terminal, one at each phase) until the decode has
    begun, and return the engine's PID: real progress, not a guess of how long it takes."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        if " decode " in line:
            break
    engines = engine_children(proc.pid)
    assert engines, "the engine is not running"
    return engines[0].pid


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_cancels_and_saves_partial_session(tmp_path: Path, signame: str) -> None:
    proc = start_headless(tmp_path)
    engine_pid = wait_for_decode(proc)
    proc.send_signal(getattr(signal, signame))
    assert proc.wait(timeout=120) == 130  # the bound only ends a run that would hang
    assert not psutil.pid_exists(engine_pid) or psutil.Process(engine_pid).status() == "zombie"
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["status"] == "cancelled"
    assert summary["failure"]["message"] == f"interrupted by {signame}"  # not "by the user"
    assert 0 < summary["tokens_generated"] < 100
    rows = (tmp_path / "run.csv").read_text().count(",engine,")
    assert rows >= summary["tokens_generated"]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_engine_exits_when_its_parent_dies(tmp_path: Path) -> None:
    """SSH gone, parent killed outright: the engine notices its stdin close."""
    proc = start_headless(tmp_path)
    engine_pid = wait_for_decode(proc)
    proc.kill()
    proc.wait(timeout=120)
    try:
        psutil.Process(engine_pid).wait(timeout=120)  # the bound only ends a hang
    except psutil.NoSuchProcess:
        pass
    alive = psutil.pid_exists(engine_pid) and psutil.Process(engine_pid).status() != "zombie"
    assert not alive


def test_headless_oom_exits_3_with_data_up_to_the_failure(tmp_path: Path) -> None:
    env = dict(os.environ, VRAMTUI_TEST_OOM_AT_TOKEN="6")
    cmd = headless(tmp_path, 20, "-q")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 3, out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["status"] == "failed"
    assert summary["failure"]["kind"] == "oom" and summary["failure"]["token"] == 6
    assert summary["tokens_generated"] == 6
    rows = (tmp_path / "run.csv").read_text().splitlines()
    engine_rows = [r.split(",") for r in rows if ",engine," in r]
    assert [r[2] for r in engine_rows if r[2]] == [str(i) for i in range(6)]
    assert [r[3] for r in engine_rows if r[2]] == ["prefill"] + ["decode"] * 5
    # The last engine row is the failure's own sample: no token, the step's high-water mark.
    assert engine_rows[-1][2] == "" and engine_rows[-1][3] == "decode" and engine_rows[-1][6]


def test_pickle_checkpoints_need_an_explicit_flag(tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads(TINY_CONFIG.read_text())
    model_type = config.pop("model_type")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))
    folder = tmp_path / "pickled"
    model.save_pretrained(folder, safe_serialization=False) if _accepts_safe(model) else None
    if not (folder / "pytorch_model.bin").exists():
        folder.mkdir(exist_ok=True)
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    for f in folder.glob("*.safetensors"):
        f.unlink()
    base = [
        sys.executable,
        "-m",
        "vramtui",
        "run",
        "--checkpoint",
        str(folder),
        "--device",
        "cpu",
        "--tokens",
        "2",
        "-q",
    ]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("vramtui:")]
    assert len(lines) == 1 and "--allow-pickle" in lines[0]
    allowed = subprocess.run([*base, "--allow-pickle"], capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr


def _accepts_safe(model: object) -> bool:
    import inspect

    return "safe_serialization" in inspect.signature(model.save_pretrained).parameters  # type: ignore[attr-defined]
