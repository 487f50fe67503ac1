"""`vramtui estimate`: table, JSON, GPU detection, and bad input as one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_CONFIG

from vramtui.cli import main
from vramtui.measure import nvml
from vramtui.models.opt import opt_model
from vramtui.predict.estimator import estimate

FIELDS = (
    "weights_bytes",
    "kv_cache_bytes",
    "transient_bytes",
    "context_bytes",
    "peak_allocated_bytes",
    "peak_total_bytes",
    "max_tokens_that_fit",
)


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no GPU unless they install one."""
    monkeypatch.setattr(nvml, "gpus", lambda: [])


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["estimate", *args, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out)


def test_json_has_every_field_and_agrees_with_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(
        capsys,
        "--model",
        "facebook/opt-1.3b",
        "--tokens",
        "300",
        "--prompt-tokens",
        "32",
        "--batch",
        "2",
        "--attn",
        "eager",
        "--gpu-memory",
        "80GB",
    )
    for name in FIELDS:
        assert name in data, name
    e = estimate(opt_model("opt-1.3b"), prompt_tokens=32, tokens=300, batch=2, attn="eager")
    for name in FIELDS[:-1]:
        assert data[name] == getattr(e, name), name
    assert data["gpu_memory_bytes"] == 80 * 10**9
    assert data["max_tokens_that_fit"] == 2048 - 32  # 80 GB holds the whole context


def test_max_tokens_that_fit_grows_with_memory(capsys: pytest.CaptureFixture[str]) -> None:
    answers = [
        _json(capsys, "--model", "opt-1.3b", "--batch", "64", "--gpu-memory", size)[
            "max_tokens_that_fit"
        ]
        for size in ("2GB", "4GB", "6GB", "10GB", "20GB", "80GB")
    ]
    assert answers[0] == 0  # 2.6 GB of weights
    assert answers == sorted(answers)
    assert len(set(answers)) == len(answers)


def test_without_a_gpu_the_fit_is_null_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "--model", "opt-125m")
    assert data["max_tokens_that_fit"] is None and data["gpu_memory_bytes"] is None
    assert "no GPU detected" in data["note"]
    assert main(["estimate", "--model", "opt-125m"]) == 0
    assert "no GPU detected" in capsys.readouterr().out


def test_the_first_gpu_total_is_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu = nvml.GpuInfo(0, "Fake H100", "GPU-1", 8 * 10**9, 10**9, 7 * 10**9)
    monkeypatch.setattr(nvml, "gpus", lambda: [gpu])
    data = _json(capsys, "--model", "opt-1.3b", "--batch", "64")
    assert data["gpu_memory_bytes"] == 8 * 10**9
    assert "Fake H100" in data["gpu_memory_source"]
    smaller = _json(capsys, "--model", "opt-1.3b", "--batch", "64", "--gpu-memory", "6GB")
    assert 0 < smaller["max_tokens_that_fit"] < data["max_tokens_that_fit"] < 2040


def test_table_lists_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "opt-350m", "--tokens", "64", "--gpu-memory", "24GiB"]) == 0
    out = capsys.readouterr().out
    for label in (
        "weights",
        "KV cache",
        "transient",
        "allocator slack",
        "CUDA context",
        "peak allocated",
        "peak reserved",
        "peak total",
        "max new tokens that fit",
    ):
        assert label in out, label
    e = estimate(opt_model("opt-350m"), tokens=64)
    assert "662.39 MB" in out and e.weights_bytes == 662_392_832


def test_a_config_json_is_estimated(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "--config", str(TINY_CONFIG), "--tokens", "10", "--dtype", "float32")
    config = json.loads(TINY_CONFIG.read_text())
    h, f, layers = config["hidden_size"], config["ffn_dim"], config["num_hidden_layers"]
    params = (
        config["vocab_size"] * h
        + (config["max_position_embeddings"] + 2) * h
        + 2 * h
        + layers * (4 * (h * h + h) + 2 * h * f + f + h + 4 * h)
    )
    assert data["weights_bytes"] == params * 4
    assert data["kv_cache_bytes"] == 2 * layers * h * 4 * (8 + 10 - 1)
    assert data["model"] == "tiny-opt"


BAD = [
    (["--model", "opt-9b"], "unknown model"),
    (["--model", "opt-125m", "--tokens", "2041"], "exceeds"),
    (["--model", "opt-125m", "--prompt-tokens", "2048", "--tokens", "1"], "exceeds"),
    (["--model", "opt-125m", "--gpu-memory", "80XB"], "not a size"),
    (["--model", "opt-125m", "--gpu-memory", "0GB"], "positive"),
    (["--model", "opt-125m", "--gpu-memory", "80"], "a size needs a unit: '80'"),
    (["--model", "opt-125m", "--dtype", "float8"], "invalid choice"),
    (["--model", "opt-125m", "--tokens", "0"], "--tokens"),
    (["--model", "opt-125m", "--tokens", "many"], "whole number"),
    (["--model", "opt-125m", "--batch", "-2"], "--batch"),
    ([], "--model"),
    (["--config", "/no/such/config.json"], "not found"),
]


@pytest.mark.parametrize("args, words", BAD)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["estimate", *args]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vramtui: ") and words in lines[0]
    assert "Traceback" not in out.err


@pytest.mark.engine
def test_a_config_transformers_cannot_build_is_one_line_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_positions": 128}))
    assert main(["estimate", "--config", str(config), "--tokens", "10"]) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert out.out == "" and len(err) == 1
    assert "cannot trace " in err[0] and "must be divisible by num_heads" in err[0]
    config.write_text(json.dumps({"model_type": "no-such-type"}))
    assert main(["estimate", "--config", str(config)]) == 2
    assert "unknown model_type 'no-such-type'" in capsys.readouterr().err


@pytest.mark.engine
def test_any_causal_lm_config_is_estimated_from_its_own_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GPT-2 (learned positions, fused qkv, Conv1D): no code of ours names it."""
    config = tmp_path / "config.json"
    gpt2 = {
        "model_type": "gpt2",
        "n_embd": 64,
        "n_head": 4,
        "n_layer": 2,
        "n_positions": 128,
        "vocab_size": 1000,
    }
    config.write_text(json.dumps(gpt2))
    assert main(["estimate", "--config", str(config), "--tokens", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # wte + wpe + per layer (2 LayerNorms, c_attn, c_proj, c_fc, c_proj) + ln_f; tied head
    per_layer = 2 * 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64)
    assert data["params"] == 1000 * 64 + 128 * 64 + 2 * per_layer + 2 * 64
    assert data["weights_bytes"] == 2 * data["params"]
    # K and V, 2 layers, 64 wide, fp16, 8 + 9 positions at the end
    assert data["kv_cache_bytes"] == 2 * 2 * 64 * 2 * (8 + 10 - 1)


def test_a_ballooning_cache_is_warned_of_unless_segments_expand(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    b8 = ("--model", "opt-1.3b", "--tokens", "2000", "--batch", "8", "--gpu-memory", "141GB")
    assert main(["estimate", *b8]) == 0
    out = capsys.readouterr().out
    predicted = estimate(opt_model("opt-1.3b"), tokens=2000, batch=8).peak_reserved_bytes
    assert f"warning: reserved grows to ~{predicted / 1e9:.1f} GB" in out
    assert "needed to fit" in out
    assert "expandable_segments:True" in out
    data = _json(capsys, *b8)
    assert data["cache_balloons"] is True and "KV cache segments" in data["warning"]
    assert data["peak_reserved_bytes"] > 50e9 and data["required_bytes"] < 8e9
    b1 = _json(capsys, "--model", "opt-6.7b", "--tokens", "2000", "--gpu-memory", "141GB")
    assert b1["cache_balloons"] is False and b1["warning"] is None
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    expanding = _json(capsys, *b8)
    assert expanding["cache_balloons"] is False and expanding["warning"] is None
    assert data["required_bytes"] <= expanding["peak_total_bytes"]
