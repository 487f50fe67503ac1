"""`vramtui run` end to end on the CPU, and every kind of bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, run_cli


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("vramtui:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.engine
def test_headless_run_writes_csv_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, json_path = tmp_path / "run.csv", tmp_path / "run.json"
    code, out, err = run_cli(
        capsys,
        "run",
        "--config",
        str(TINY_CONFIG),
        "--tokens",
        "7",
        "--device",
        "cpu",
        "--csv",
        str(csv_path),
        "--json",
        str(json_path),
    )
    assert code == 0, err
    assert "Peak memory" in out and "token 7/7" in err
    summary = json.loads(json_path.read_text())
    assert summary["status"] == "completed" and summary["tokens_generated"] == 7
    text = csv_path.read_text()
    # token 0's row is the prefill, as docs/formats.md says; tokens 1..6 are decode steps
    assert ",engine,0,prefill," in text and text.count(",engine,") >= 7
    assert [f",engine,{i},decode," in text for i in range(1, 7)] == [True] * 6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "opt-9000"], "`vramtui models` lists the"),
        (["--model", "opt-125m", "--tokens", "0"], "--tokens must be a positive"),
        (["--model", "opt-125m", "--tokens", "-5"], "--tokens must be a positive"),
        (["--model", "opt-125m", "--tokens", "2041"], "limit of 2048 positions"),
        (["--model", "opt-125m", "--prompt-tokens", "2000", "--tokens", "100"], "2048"),
        (["--model", "opt-125m", "--device", "tpu:0"], "devices here: "),
        (["--model", "opt-125m", "--tokens", "ten"], "not a whole number"),
        (["--checkpoint", "/nonexistent/model"], "not found"),
        (["--config", "/nonexistent/config.json"], "not found"),
        (["--model", "opt-125m", "--attn", "flash"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", *args)
    assert code == 2
    assert needle in one_line_error(err)


def test_absent_device_is_caught_and_lists_devices(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "run", "--config", str(TINY_CONFIG), "--tokens", "3", "--device", "cuda:7", "-q"
    )
    assert code == 2
    assert "devices here:" in one_line_error(err) and "cpu" in err


def test_unwritable_export_is_caught_before_the_model_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vramtui.commands.run as run_command

    def no_engine(*a: object, **k: object) -> None:
        raise AssertionError("the engine must not start")

    monkeypatch.setattr(run_command, "Recorder", no_engine)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [
        (str(tmp_path / "missing" / "x.csv"), "does not exist"),
        (str(tmp_path), "is a folder"),
    ]
    if os.geteuid() != 0:  # root may write anywhere
        cases.append((str(locked / "x.csv"), "not writable"))
    for path, needle in cases:
        code, _, err = run_cli(capsys, "run", "--config", str(TINY_CONFIG), "--csv", path)
        assert code == 2
        assert needle in one_line_error(err)


def test_existing_export_is_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "keep.json"
    target.write_text("precious")
    code, _, err = run_cli(capsys, "run", "--config", str(TINY_CONFIG), "--json", str(target))
    assert code == 2 and "--force" in one_line_error(err)
    assert target.read_text() == "precious"


@pytest.mark.engine
def test_not_a_causal_lm_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "resnet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    code, _, err = run_cli(capsys, "run", "--checkpoint", str(folder), "--device", "cpu", "-q")
    assert code == 2
    assert "not a causal language model" in one_line_error(err)


def test_malformed_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, "run", "--config", str(bad))
    assert code == 2 and "not valid JSON" in one_line_error(err)


@pytest.mark.engine
def test_checkpoint_source_loads_a_saved_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads(TINY_CONFIG.read_text())
    model_type = config.pop("model_type")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))
    model.save_pretrained(tmp_path / "ckpt")
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    json_path = tmp_path / "ckpt.json"
    code, _, err = run_cli(
        capsys,
        "run",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--tokens",
        "4",
        "--device",
        "cpu",
        "--json",
        str(json_path),
        "-q",
    )
    assert code == 0, err
    summary = json.loads(json_path.read_text())
    assert summary["params"] == params
    assert summary["weights_bytes"] == params * torch.tensor([], dtype=torch.float32).element_size()
    assert summary["spec"]["source"] == "checkpoint"
