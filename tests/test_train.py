"""`vramtui train`: the recipe checked before anything runs, and full, LoRA and QLoRA
training steps on a tiny Llama on the CPU, each part's bytes equal to what the tensors
of the same model hold when built here."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import run_cli

from vramtui.models.hf import transformers_config
from vramtui.runspec import quant as quant_module
from vramtui.runspec.train_spec import TRAIN_PHASES

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"
TRAIN = ("train", "--config", str(TINY_LLAMA), "--device", "cpu", "--seq", "16", "--batch", "2")


def tiny_model() -> Any:
    """The tiny Llama as the engine's base is, in float32 (random values)."""
    from transformers import AutoModelForCausalLM

    config = transformers_config(json.loads(TINY_LLAMA.read_text()), str(TINY_LLAMA))
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def storage_bytes(tensors: Any) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.numel() * t.element_size()
    return total


def adamw_state_bytes(params: list[Any]) -> int:
    """torch's AdamW after one step of a plain loop: every state tensor's bytes."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.AdamW(params)
    optimizer.step()
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values())


def train(capsys: pytest.CaptureFixture[str], tmp_path: Path, *flags: str) -> dict[str, Any]:
    out = tmp_path / "summary.json"
    code, stdout, err = run_cli(
        capsys, *TRAIN, *flags, "-q", "--json", str(out), "--out", str(tmp_path / "kept")
    )
    assert code == 0, err
    assert "Training" in stdout
    saved: dict[str, Any] = json.loads(out.read_text())
    return saved


def check_steps(saved: dict[str, Any], steps: int) -> dict[str, Any]:
    """Every step done, every phase's peak kept, the run's peak named by phase and step."""
    training: dict[str, Any] = saved["training"]
    assert saved["status"] == "completed"
    assert training["steps_done"] == steps
    assert [s["step"] for s in training["steps"]] == list(range(1, steps + 1))
    assert set(training["phase_peaks"]) == set(TRAIN_PHASES)
    peak = training["peak"]
    assert peak["phase"] in TRAIN_PHASES and 1 <= peak["step"] <= steps
    assert peak["value"] == max(p["value"] for p in training["phase_peaks"].values())
    assert all(s["loss"] is not None for s in training["steps"])
    # the parts are counted in step 1 only: every step runs the same graph and shapes
    first, *later = training["steps"]
    assert first["activation_bytes"] > 0 and first["gradient_bytes"] > 0
    assert all(s["activation_bytes"] is None and s["gradient_bytes"] is None for s in later)
    check_identity(training)
    return training


def check_identity(training: dict[str, Any]) -> None:
    """The peak taken apart at its moment: the parts and the transients sum to it."""
    parts = training["breakdown"]
    held = sum(
        parts[f"{name}_bytes"] or 0
        for name in ("frozen_weights", "trainable_weights", "gradients", "optimizer_states")
    )
    held += (parts["activations_saved_bytes"] or 0) - (parts["optimizer_states_paged_bytes"] or 0)
    assert parts["transients_bytes"] is not None
    assert held + parts["transients_bytes"] == training["peak"]["value"]
    phase = training["peak"]["phase"]
    saved = training["steps"][0]["activation_bytes"]
    assert parts["activations_saved_bytes"] == (saved if phase in ("forward", "backward") else 0)


@pytest.mark.slow
@pytest.mark.engine
def test_full_fine_tuning_parts_are_the_models_tensors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    saved = train(capsys, tmp_path, "--method", "full", "--steps", "2")
    training = check_steps(saved, 2)
    model = tiny_model()
    params = list(model.parameters())
    trainable = storage_bytes(params)
    parts, counted = training["breakdown"], training["steps"][0]
    assert parts["trainable_weights_bytes"] == trainable
    assert parts["frozen_weights_bytes"] == storage_bytes(model.buffers())
    assert counted["gradient_bytes"] == trainable
    assert counted["optimizer_state_bytes"] == adamw_state_bytes(params)
    assert training["optimizer"] == "torch.AdamW"
    assert training["tokens_per_step"] == 2 * 16
    # a sample after every decoder layer in forward and in backward, besides the
    # phases' edges: the saw-tooth shows (the tiny Llama has 2 layers; 2 steps)
    with next((tmp_path / "kept").glob("*.csv")).open() as f:
        phases = [row["phase"] for row in csv.DictReader(f) if row["source"] == "engine"]
    assert phases.count("forward") >= 2 * (2 + 2)
    assert phases.count("backward") >= 2 * (2 + 2)
    assert phases.count("optimizer") >= 2 * 2 and phases.count("zero_grad") >= 2 * 2
    # the saved session reads back: `vramtui show` prints the training part
    code, out, _ = run_cli(capsys, "show", str(tmp_path / "summary.json"))
    assert code == 0
    assert "Training" in out and "full, seq 16, micro-batch 2" in out
    assert f"of step {training['peak']['step']}" in out


@pytest.mark.slow
@pytest.mark.engine
def test_lora_trains_the_adapters_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    saved = train(capsys, tmp_path, "--method", "lora", "--steps", "2", "--grad-accum", "2")
    training = check_steps(saved, 2)
    model = get_peft_model(
        tiny_model(),
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
    )
    adapters = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    parts, counted = training["breakdown"], training["steps"][0]
    assert parts["trainable_weights_bytes"] == storage_bytes(adapters)
    assert parts["frozen_weights_bytes"] == storage_bytes([*frozen, *model.buffers()])
    assert counted["gradient_bytes"] == storage_bytes(adapters)
    assert counted["optimizer_state_bytes"] == adamw_state_bytes(adapters)
    assert training["tokens_per_step"] == 2 * 16 * 2  # two micro-batches a step


@pytest.mark.slow
@pytest.mark.engine
def test_qlora_trains_adapters_on_a_4bit_base(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    saved = train(capsys, tmp_path, "--method", "qlora", "--steps", "2", "--grad-checkpointing")
    training = check_steps(saved, 2)
    base = saved["spec"]["base"]
    assert (base["quant"], base["double_quant"], base["dtype"]) == ("nf4", True, "bfloat16")
    assert "grad checkpointing on" in training["recipe"]
    # LoRA A (r x in) and B (out x r) on every linear layer but the head, in float32
    # (peft keeps adapters in float32 on a bfloat16 base)
    model = tiny_model()
    linears = [
        m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n
    ]
    adapter_params = [16 * (m.in_features + m.out_features) for m in linears]
    adapter_bytes = 4 * sum(adapter_params)
    parts, counted = training["breakdown"], training["steps"][0]
    assert parts["trainable_weights_bytes"] == adapter_bytes
    assert counted["gradient_bytes"] == adapter_bytes
    step = torch.zeros(())  # the per-parameter step count torch's AdamW keeps
    assert counted["optimizer_state_bytes"] == 2 * adapter_bytes + 2 * len(linears) * (
        step.element_size()
    )
    # the 4-bit base: half a byte a linear layer's weight where float32 holds four
    dense = sum(m.weight.numel() for m in linears)
    assert parts["frozen_weights_bytes"] < storage_bytes(model.parameters()) - 3 * dense


@pytest.mark.slow
@pytest.mark.engine
def test_oom_in_backward_keeps_the_steps_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRAMTUI_TEST_OOM_AT_TOKEN", "2")
    out = tmp_path / "summary.json"
    code, stdout, err = run_cli(
        capsys, *TRAIN, "--steps", "3", "-q", "--json", str(out), "--out", str(tmp_path)
    )
    assert code == 3, err
    saved = json.loads(out.read_text())
    assert saved["failure"]["kind"] == "oom"
    assert (saved["failure"]["phase"], saved["failure"]["token"]) == ("backward", 2)
    assert saved["training"]["steps_done"] == 1
    assert "oom at backward of step 2" in stdout
    assert len(list(tmp_path.glob("*.csv"))) == 1  # the samples kept


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--method", "dpo"), "invalid choice: 'dpo'"),
        (("--steps", "0"), "--steps must be positive, got 0"),
        (("--seq", "-4"), "--seq must be positive"),
        (("--grad-accum", "0"), "--grad-accum must be positive"),
        (("--lora-targets", ","), "--lora-targets names no module"),
        (("--method", "lora", "--quant", "nf4"), "use --method qlora"),
        (("--method", "qlora", "--quant", "int8"), "--method qlora loads the base in nf4"),
        (("--optim", "paged-adamw-8bit"), "CUDA managed memory; this run is on cpu"),
        (("--seq", "4096"), "--seq 4096 exceeds the model's limit of 128 positions"),
        (("--cap", "8GiB"), "--cap"),
    ],
)
def test_bad_recipes_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: tuple[str, ...], says: str
) -> None:
    code, out, err = run_cli(capsys, *TRAIN, *flags, "--out", str(tmp_path))
    assert code == 2
    assert says in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("vramtui: ")
    assert out == "" and not list(tmp_path.iterdir())  # nothing ran, nothing kept


@pytest.mark.parametrize(
    ("flags", "missing", "says"),
    [
        (("--method", "lora"), "peft", "--method lora needs peft"),
        (("--method", "qlora"), "bitsandbytes", "--method qlora needs bitsandbytes"),
        (("--optim", "adamw-8bit"), "bitsandbytes", "--optim adamw-8bit needs bitsandbytes"),
    ],
)
def test_a_missing_library_names_the_train_extra(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    missing: str,
    says: str,
) -> None:
    real = quant_module.installed
    monkeypatch.setattr(
        "vramtui.runspec.train_spec.installed", lambda package: package != missing and real(package)
    )
    code, _, err = run_cli(capsys, *TRAIN, *flags)
    assert code == 2
    assert err.strip() == f'vramtui: {says}: pip install -e ".[train]"'


@pytest.mark.slow
@pytest.mark.engine
def test_ctrl_c_keeps_the_steps_done(tmp_path: Path) -> None:
    # half a second a step (the test hook): Ctrl+C, sent once step 1 is told, lands
    # long before step 50, however busy the machine
    env = dict(os.environ, VRAMTUI_TEST_STEP_SLEEP="0.5", PYTHONUNBUFFERED="1")
    json_path = tmp_path / "train.json"
    cmd = [sys.executable, "-m", "vramtui", *TRAIN, "--steps", "50", "--json", str(json_path),
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:  # off a terminal: a line at every step told
        if " step 1/50 " in line:
            break
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130  # the bound only ends a run that would hang
    saved = json.loads(json_path.read_text())
    assert saved["status"] == "cancelled"
    assert 1 <= saved["training"]["steps_done"] < 50
    assert (tmp_path / "train.json").is_file() and list(tmp_path.glob("*-cpu.csv"))
