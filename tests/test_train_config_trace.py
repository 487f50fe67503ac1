"""The approximate training step written from a config's numbers (config_steps.py)
against the traced one (step_tracer.py) on tiny configs of each family, method and
checkpointing setting; its import needs no torch; `estimate --workload` says its basis."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY_CONFIG, TINY_LLAMA, run_cli

from vramtui.measure import nvml
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.training.config_steps import config_train_trace
from vramtui.predict.training.optimizer_states import optimizer_states
from vramtui.predict.training.replay import TrainingEstimate, estimate_training
from vramtui.predict.training.trace import TrainShape, parse

pytest.importorskip("peft", reason="the .[train] extra is not installed")

# The approximate step's stated tolerance against the traced one: the peak allocated
# above the weights, gradients, optimizer states and cuBLAS workspaces (what the
# blocks write), and the activations alive at the forward's end.
DYNAMIC_TOLERANCE = 0.10
ACTIVATIONS_TOLERANCE = 0.25
FAMILIES: dict[str, dict[str, object]] = {
    "llama": TINY_LLAMA,
    "qwen2": {**TINY_LLAMA, "model_type": "qwen2", "tie_word_embeddings": True},
    "phi3": {**TINY_LLAMA, "model_type": "phi3", "pad_token_id": 0, "bos_token_id": 1,
             "eos_token_id": 2},
    "gpt_neox": {
        "model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 256,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 384,
        "max_position_embeddings": 512, "rotary_pct": 0.25, "tie_word_embeddings": False,
    },
    "opt": json.loads(TINY_CONFIG.read_text()),
    "opt-narrow-post-ln": {  # opt-350m's layout: projections in and out, norms after
        **json.loads(TINY_CONFIG.read_text()), "word_embed_proj_dim": 16,
        "do_layer_norm_before": False,
    },
}  # fmt: skip
CASES: list[tuple[str, dict[str, Any]]] = [
    (family, {"method": method}) for family in FAMILIES for method in ("full", "lora", "qlora")
]
CASES += [("llama", {"method": m, "grad_checkpointing": True}) for m in ("full", "lora", "qlora")]
CASES += [  # the other optimizers, accumulation, named targets, float32 on the CPU
    ("llama", {"optim": "sgd"}), ("llama", {"optim": "adafactor"}),
    ("llama", {"method": "qlora", "optim": "adamw-8bit"}), ("llama", {"grad_accum": 3}),
    ("llama", {"method": "lora", "lora_targets": "q_proj,v_proj"}),
    ("llama", {"method": "lora", "backend": "cpu", "dtype": "float32"}),
    ("llama", {"backend": "cpu", "dtype": "float32"}),
]  # fmt: skip


def _both(family: str, shape: TrainShape) -> tuple[TrainingEstimate, TrainingEstimate, Any]:
    from vramtui.predict.training.step_tracer import Request, trace

    config = FAMILIES[family]
    traced = parse(trace(Request(**asdict(shape), config=dict(config))))
    written = config_train_trace(dict(config), shape)
    assert written is not None
    return estimate_training(traced, shape), estimate_training(written, shape), (traced, written)


def _dynamic(est: TrainingEstimate) -> int:
    workspace = DEFAULT.cublas_workspace_bytes + DEFAULT.cublaslt_workspace_bytes
    workspace = workspace if est.backend == "cuda" else 0
    fixed = est.weights_bytes + est.gradients_bytes + est.optimizer_states_bytes + workspace
    return est.peak_allocated_bytes - fixed


@pytest.mark.parametrize(("family", "recipe"), CASES)
def test_the_written_step_is_the_traced_one_within_its_tolerance(
    family: str, recipe: dict[str, Any]
) -> None:
    shape = TrainShape(batch=2, seq=64, **recipe)
    traced, written, (traced_trace, written_trace) = _both(family, shape)
    for term in ("weights_bytes", "frozen_weights_bytes", "trainable_weights_bytes",
                 "gradients_bytes", "optimizer_states_bytes"):  # fmt: skip
        assert getattr(written, term) == getattr(traced, term), term
    params_traced, params_written = list(traced_trace.params), list(written_trace.params)
    for optim in ("adafactor", "adamw-8bit"):  # states by shape, not only by bytes
        states = [optimizer_states(optim, p) for p in (params_written, params_traced)]
        assert sorted(states[0].tensors) == sorted(states[1].tensors), optim
    off = abs(_dynamic(written) - _dynamic(traced)) / _dynamic(traced)
    assert off <= DYNAMIC_TOLERANCE, f"peak above the fixed terms off by {off:.1%}"
    acts = abs(written.activations_bytes - traced.activations_bytes) / traced.activations_bytes
    assert acts <= ACTIVATIONS_TOLERANCE, f"activations off by {acts:.1%}"
    assert written.peak_phase == traced.peak_phase


def test_checkpointing_keeps_fewer_activations_in_the_written_step() -> None:
    plain = TrainShape(method="lora", batch=2, seq=64)
    ckpt = TrainShape(method="lora", batch=2, seq=64, grad_checkpointing=True)
    kept = []
    for shape in (plain, ckpt):
        written = config_train_trace(dict(TINY_LLAMA), shape)
        assert written is not None
        kept.append(estimate_training(written, shape).activations_bytes)
    assert kept[1] < kept[0]


def test_a_family_not_written_out_has_no_written_step() -> None:
    gemma = {**TINY_LLAMA, "model_type": "gemma2"}
    assert config_train_trace(gemma, TrainShape()) is None
    assert config_train_trace(dict(TINY_LLAMA), TrainShape(attn="eager")) is None


def test_writing_a_step_imports_no_torch() -> None:
    code = (
        "import sys, json\n"
        "from vramtui.predict.training.config_steps import config_train_trace\n"
        "from vramtui.predict.training.replay import estimate_training\n"
        "from vramtui.predict.training.trace import TrainShape\n"
        f"config = json.loads({json.dumps(json.dumps(TINY_LLAMA))})\n"
        "shape = TrainShape(method='qlora')\n"
        "estimate_training(config_train_trace(config, shape), shape)\n"
        "print('torch' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
    )  # fmt: skip
    assert out.stdout.strip() == "False"


@pytest.fixture
def llama_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(nvml, "gpus", lambda: [])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]}))
    return path


def test_estimate_says_approximate_and_how_to_trace(
    capsys: pytest.CaptureFixture[str], llama_config: Path
) -> None:
    args = ("estimate", "--config", str(llama_config), "--workload", "lora", "--seq", "32")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "basis: approximate" in out and "--trace" in out
    code, out, _ = run_cli(capsys, *args, "--json")
    data = json.loads(out)
    assert data["basis"] == "approximate" and "--trace" in data["basis_note"]


def test_the_fit_search_of_an_approximate_estimate_traces_nothing(
    capsys: pytest.CaptureFixture[str], llama_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.commands import estimate_train

    def refused(*_: object) -> None:
        raise AssertionError("traced")

    monkeypatch.setattr(estimate_train, "train_trace", refused)
    args = ("estimate", "--config", str(llama_config), "--workload", "full", "--seq", "32")
    code, out, _ = run_cli(capsys, *args, "--gpu-memory", "1GiB", "--json")
    data = json.loads(out)
    assert code == 0 and data["basis"] == "approximate"
    assert data["largest_batch_that_fits"] > 1 and data["largest_seq_that_fits"] > 32


@pytest.mark.slow
def test_estimate_with_trace_says_traced_and_then_reads_the_cached_trace(
    capsys: pytest.CaptureFixture[str], llama_config: Path
) -> None:
    from vramtui.predict.training import trace as train_trace_module

    args = ("estimate", "--config", str(llama_config), "--workload", "lora", "--seq", "48")
    code, out, _ = run_cli(capsys, *args, "--trace")
    assert code == 0 and "basis: traced" in out
    train_trace_module._cached.cache_clear()  # as a fresh process: from the disk
    code, again, _ = run_cli(capsys, *args)
    assert code == 0 and "basis: traced" in again
    assert again.splitlines()[2:] == out.splitlines()[2:]


def test_trace_is_refused_on_a_generation_estimate(
    capsys: pytest.CaptureFixture[str], llama_config: Path
) -> None:
    code, _, err = run_cli(capsys, "estimate", "--config", str(llama_config), "--trace")
    assert code == 2 and "--trace applies to --workload" in err
