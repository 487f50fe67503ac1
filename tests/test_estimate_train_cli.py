"""`vramtui estimate --workload full|lora|qlora`: JSON fields, and bad input refused in
one line with exit 2 before anything is traced."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_CONFIG, run_cli

from vramtui.measure import nvml
from vramtui.runspec import quant

pytest.importorskip("peft", reason="the .[train] extra is not installed")


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "gpus", lambda: [])


def _estimate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "estimate", "--config", str(TINY_CONFIG), *args)


@pytest.mark.engine
@pytest.mark.slow
def test_json_has_the_generation_fields_and_the_training_terms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _estimate(capsys, "--workload", "lora", "--seq", "32", "--json")
    assert code == 0
    data = json.loads(out)
    for name in ("weights_bytes", "peak_allocated_bytes", "peak_total_bytes"):
        assert data[name] > 0
    assert data["workload"] == "lora" and data["dtype"] == "bfloat16"
    assert 0 < data["trainable_weights_bytes"] < data["frozen_weights_bytes"]
    assert data["optimizer_states_bytes"] == 2 * data["trainable_weights_bytes"]
    assert data["peak_phase"] in ("forward", "backward", "optimizer", "zero_grad")
    assert data["largest_batch_that_fits"] is None  # no GPU here, no --gpu-memory
    assert "--gpu-memory" in data["note"]


@pytest.mark.engine
@pytest.mark.slow
def test_the_table_names_each_term(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _estimate(capsys, "--workload", "full", "--seq", "32", "--optim", "sgd")
    assert code == 0
    for term in ("gradients", "optimizer states", "activations", "peak allocated", "step 2"):
        assert term in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--workload", "full", "--seq", "0"), "--seq"),
        (("--workload", "full", "--seq", "4096"), "positions"),
        (("--workload", "lora", "--lora-r", "0"), "--lora-r"),
        (("--workload", "full", "--grad-accum", "-1"), "--grad-accum"),
        (("--workload", "qlora", "--quant", "int8"), "nf4"),
        (("--seq", "512"), "--seq applies to --workload"),
        (("--optim", "sgd"), "--optim applies to --workload"),
        (("--grad-checkpointing",), "--grad-checkpointing applies to --workload"),
    ],
)
def test_bad_recipes_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], says: str
) -> None:
    code, out, err = _estimate(capsys, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert says in lines[-1] and "Traceback" not in err


def test_unknown_optimizer_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _estimate(capsys, "--workload", "full", "--optim", "lion")
    assert code == 2 and out == ""
    assert "--optim" in err.strip().splitlines()[-1]


def test_adapters_without_peft_name_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quant, "installed", lambda package: package != "peft")
    import vramtui.commands.estimate_train as command

    monkeypatch.setattr(command, "installed", lambda package: package != "peft")
    code, _, err = _estimate(capsys, "--workload", "lora")
    assert code == 2
    assert err.strip().splitlines() == [
        'vramtui: --workload lora needs peft: pip install -e ".[train]"'
    ]
