"""The front door: everything checked before anything runs, no run ever lost, honest words."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CPU_ONLY, TINY_CONFIG, run_cli

from vramtui.cli import build_parser
from vramtui.commands import app_command
from vramtui.errors import EXIT_BROKEN_PIPE
from vramtui.measure import recorder as recorder_module
from vramtui.models.catalogue import model_names


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- the app checks its flags exactly as `vramtui run` does --------------------------------
@pytest.mark.usefixtures("no_textual")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "opt-999m", "--start"], "unknown model 'opt-999m' (did you mean"),
        (["--model", "opt-125m", "--tokens", "0"], "--tokens must be a positive"),
        (["--model", "opt-125m", "--device", "cuda:7"], "no device 'cuda:7' here"),
        (["--prompt", "hello"], "--prompt needs a checkpoint with a tokenizer"),
    ],
)
def test_the_app_refuses_bad_flags_before_it_starts(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and needle in one_line(err)


def test_hub_ids_and_any_case_name_the_catalogue_model(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []

    class FakeApp:
        def __init__(self, spec: object, **kwargs: object) -> None:
            started.append(spec)
            self.return_code = 0
            self.current = None
            self.saved_sessions: list[object] = []

        def run(self) -> None:
            pass

        def interrupt_from_signal(self, reason: str) -> None:
            pass

    import vramtui.tui.app as tui_app

    monkeypatch.setattr(tui_app, "VramApp", FakeApp)
    args = app_command.build_parser().parse_args(["--model", "facebook/OPT-350m", "--start"])
    assert app_command.run(args) == 0
    assert started[0].model == "opt-350m"  # type: ignore[attr-defined]


# ---- checked before the engine starts, nothing written ---------------------------------------
@pytest.mark.engine
def test_an_absent_device_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, json_path = tmp_path / "c7.csv", tmp_path / "c7.json"
    args = ["run", "--config", str(TINY_CONFIG), "--tokens", "3", "--device", "cuda:7"]
    code, _, err = run_cli(capsys, *args, "--csv", str(csv_path), "--json", str(json_path))
    assert code == 2 and "no device 'cuda:7' here; devices here: " in one_line(err)
    assert not csv_path.exists() and not json_path.exists()
    # ... so the corrected run goes ahead without --force
    fixed = ["--device", "cpu", "--csv", str(csv_path), "--json", str(json_path), "-q"]
    code, _, err = run_cli(capsys, "run", "--config", str(TINY_CONFIG), "--tokens", "3", *fixed)
    assert code == 0, err


def test_a_prompt_needs_a_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "run", "--config", str(TINY_CONFIG), "--prompt", "Hello", "--device", "cpu"
    )
    assert code == 2 and "--prompt needs a checkpoint with a tokenizer" in one_line(err)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(TINY_CONFIG.read_text())
    (folder / "model.safetensors").write_bytes(b"")
    code, _, err = run_cli(capsys, "run", "--checkpoint", str(folder), "--prompt", "Hi")
    assert code == 2 and f"{folder} has none" in one_line(err)


def test_csv_and_json_on_the_same_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "run.out"
    args = ["run", "--config", str(TINY_CONFIG), "--csv", str(same), "--json", str(same)]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "--csv and --json name the same file" in one_line(err)


def test_argparse_errors_have_one_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", "--tokens", "ten")
    line = one_line(err)
    assert code == 2 and line.startswith("vramtui: argument --tokens")
    assert "vramtui: vramtui" not in line and "(see 'vramtui run --help')" in line


# ---- saving never loses a run ------------------------------------------------------------------
@pytest.mark.engine
def test_a_file_that_cannot_be_written_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vramtui.commands.run as run_command

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_command, "write_csv", disk_full)
    csv_path, json_path = tmp_path / "run.csv", tmp_path / "run.json"
    args = ["run", "--config", str(TINY_CONFIG), "--tokens", "4", "--device", "cpu", "-q"]
    code, out, err = run_cli(capsys, *args, "--csv", str(csv_path), "--json", str(json_path))
    assert code == 1  # the run completed, a file it was asked for did not get written
    assert "Traceback" not in err
    assert f"vramtui: cannot write {csv_path}: No space left on device" in err
    assert "Peak memory" in out  # the summary is still printed
    assert json.loads(json_path.read_text())["status"] == "completed"  # the other file too
    kept = list((tmp_path / "data" / "vramtui" / "sessions").glob("*.csv"))
    assert len(kept) == 1 and ",engine,3,decode," in kept[0].read_text()
    assert str(kept[0]) in err


def test_exported_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from vramtui.report.export import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---- CPU runs know about RAM --------------------------------------------------------------------
@pytest.mark.engine
def test_the_oom_killer_is_reported_as_out_of_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine is SIGKILLed in step 2 (as the kernel's OOM killer would) while its RSS
    # is well over 80 % of the limit the parent believes in.
    monkeypatch.setenv("VRAMTUI_TEST_CRASH_AT_TOKEN", "2")
    monkeypatch.setattr(recorder_module, "memory_limit", lambda: 100 * 10**6)
    json_path = tmp_path / "run.json"
    args = ["run", "--config", str(TINY_CONFIG), "--tokens", "6", "--device", "cpu", "-q"]
    code, _, err = run_cli(capsys, *args, "--json", str(json_path))
    assert code == 3, err
    failure = json.loads(json_path.read_text())["failure"]
    assert failure["kind"] == "oom"
    assert failure["message"].startswith("killed by the system, probably out of memory: RSS ")
    assert failure["message"].endswith(" of 100.00 MB")


@pytest.mark.engine
def test_a_sigkill_far_from_the_limit_is_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRAMTUI_TEST_CRASH_AT_TOKEN", "2")
    monkeypatch.setattr(recorder_module, "memory_limit", lambda: 10**15)
    json_path = tmp_path / "run.json"
    args = ["run", "--config", str(TINY_CONFIG), "--tokens", "6", "--device", "cpu", "-q"]
    code, _, _ = run_cli(capsys, *args, "--json", str(json_path))
    assert code == 1
    failure = json.loads(json_path.read_text())["failure"]
    assert failure["kind"] == "crashed"
    # The engine's stderr holds the loader's progress bar; the message does not quote it
    assert failure["message"] == "engine exited with code -9"


def test_a_cpu_run_predicted_not_to_fit_is_refused_before_it_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.commands import run as run_command
    from vramtui.measure import device_inventory

    monkeypatch.setattr(device_inventory, "available", lambda: CPU_ONLY)  # 20 GB available
    monkeypatch.setattr(run_command, "Recorder", None)  # starting a run would fail the test
    code, out, err = run_cli(capsys, "run", "-m", "opt-13b", "-n", "5")
    assert code == 3 and out == ""
    assert one_line(err).startswith(
        "vramtui: opt-13b won't fit: predicted peak RSS 51.79 GB, 20.00 GB of RAM available; "
        "--no-ram-check runs it anyway"
    )


def test_a_load_that_runs_out_of_ram_is_out_of_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-ram-check starts it; its embedding (2**52 bytes, more than any address space)
    cannot be allocated, whatever the system's overcommit policy."""
    config = json.loads(TINY_CONFIG.read_text()) | {"vocab_size": 2**45}
    (tmp_path / "huge.json").write_text(json.dumps(config))
    json_path = tmp_path / "run.json"
    args = ["run", "--config", str(tmp_path / "huge.json"), "-n", "3", "-d", "cpu", "-q"]
    code, _, err = run_cli(capsys, *args, "--no-ram-check", "--json", str(json_path))
    assert code == 3, err
    failure = json.loads(json_path.read_text())["failure"]
    assert (failure["kind"], failure["phase"]) == ("oom", "load")
    assert failure["requested_bytes"] == 2**52
    assert failure["message"].startswith("DefaultCPUAllocator: can't allocate memory")


def test_estimate_checks_a_cpu_run_against_available_ram(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "estimate", "--model", "opt-66b", "--device", "cpu")
    assert code == 0
    assert "float32" in out and "won't fit" in out and "RAM available" in out
    code, out, _ = run_cli(capsys, "estimate", "--model", "opt-66b", "--device", "cpu", "--json")
    data = json.loads(out)
    assert data["fits"] is False and data["dtype"] == "float32" and data["backend"] == "cpu"


def test_a_fine_tuned_variant_is_estimated_as_its_base_model_saying_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "estimate", "-m", "Qwen/Qwen2.5-7B-Instruct", "--json")
    assert code == 0 and json.loads(out)["model"] == "qwen2.5-7b"
    assert one_line(err) == "vramtui: Qwen/Qwen2.5-7B-Instruct: same architecture as qwen2.5-7b"


@pytest.mark.parametrize("args", [("estimate", "-m", "opt-125m"), ("models",)])
def test_a_reader_that_goes_away_ends_a_command_quietly(args: tuple[str, ...]) -> None:
    """`vramtui estimate | head -1`: stdout's pipe closed before a line is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vramtui", *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE == 141
    assert done.stderr == ""


def test_max_tokens_says_when_the_positions_are_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "estimate", "--model", "opt-125m", "--gpu-memory", "80GB")
    assert code == 0
    assert "max new tokens that fit in 80.00 GB (--gpu-memory): 2040" in out
    assert "(the model's 2048 positions are the limit, not memory)" in out
    code, out, _ = run_cli(capsys, "estimate", "--model", "opt-6.7b", "--gpu-memory", "14GB")
    assert "positions are the limit" not in out


# ---- discoverability -------------------------------------------------------------------------
def test_help_explains_every_flag_lists_the_models_and_shows_defaults() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("run", "bench", "estimate"):
        sub = commands[name]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
    text = commands["run"].format_help()
    assert all(model in text for model in model_names())
    assert "(default: 200)" in text and "(default: sdpa)" in text and "(default: 1)" in text
    app_help = app_command.build_parser().format_help()
    assert "--start" in app_help and "(default: opt-125m)" in app_help
