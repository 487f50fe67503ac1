"""`vramtui train` on the CPU holds a lower bound of what training needs (the weights;
for full fine-tuning, gradients and the optimizer's states too) against the RAM
available before it starts, as `vramtui run` holds its estimate."""

from __future__ import annotations

import pytest
from helpers import CPU_ONLY, resolved, run_cli

from vramtui.commands.ram_check import train_need_bytes, train_ram_refusal
from vramtui.predict.estimator import estimate_run
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec

LLAMA_3B = RunSpec(model="llama-3.2-3b", device="cpu", dtype="float32", tokens=1, prompt_tokens=1)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_full_fine_tuning_that_cannot_fit_the_ram_is_refused_before_it_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.commands import train as train_command
    from vramtui.measure import device_inventory

    monkeypatch.setattr(device_inventory, "available", lambda: CPU_ONLY)  # 20 GB available
    monkeypatch.setattr(train_command, "Recorder", None)  # starting a run would fail the test
    code, out, err = run_cli(capsys, "train", "-m", "llama-3.2-3b", "--device", "cpu")
    assert code == 3 and out == ""
    line = one_line(err)
    assert line.startswith("vramtui: llama-3.2-3b won't fit: training needs at least ")
    assert "(weights, gradients, optimizer states and the process)" in line
    assert line.endswith("20.00 GB available; --no-ram-check runs it anyway")


def test_the_bound_counts_gradients_and_states_for_full_fine_tuning_only() -> None:
    run = resolved(LLAMA_3B, CPU_ONLY)
    est = estimate_run(run)
    assert est is not None
    weights = est.weights_bytes
    assert train_need_bytes(est, TrainSpec(base=LLAMA_3B, method="full")) == 4 * weights
    assert train_need_bytes(est, TrainSpec(base=LLAMA_3B, method="full", optim="sgd")) == (
        2 * weights
    )
    eight_bit = TrainSpec(base=LLAMA_3B, method="full", optim="adamw-8bit")
    assert train_need_bytes(est, eight_bit) == 2 * weights + 2 * est.model.params
    # LoRA trains adapters on a frozen base: the weights (12.9 GB) fit 20 GB
    assert train_need_bytes(est, TrainSpec(base=LLAMA_3B, method="lora")) == weights
    assert train_ram_refusal(run, TrainSpec(base=LLAMA_3B, method="lora")) is None
    assert train_ram_refusal(run, TrainSpec(base=LLAMA_3B, method="full")) is not None


class Started(Exception):
    """The run got past every check and was about to start."""


class StartingRecorder:
    @staticmethod
    def for_run(*args: object, **kwargs: object) -> None:
        raise Started


def test_no_ram_check_starts_it_anyway(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.commands import train as train_command
    from vramtui.measure import device_inventory

    monkeypatch.setattr(device_inventory, "available", lambda: CPU_ONLY)
    monkeypatch.setattr(train_command, "Recorder", StartingRecorder)
    with pytest.raises(Started):
        run_cli(capsys, "train", "-m", "llama-3.2-3b", "--device", "cpu", "--no-ram-check")
