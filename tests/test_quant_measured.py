"""A quantized run measured as itself: the Loaded event, the JSON summary and the typed
Summary carry the quantization and the weights as stored; the text summary and the
breakdown show the split; a QuantizedCache counts in its stored precision."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_cli

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.measure import events as ev
from vramtui.measure.session import Session
from vramtui.measure.summary_format import read_summary, summary, view_from
from vramtui.report.summary_text import fact_rows
from vramtui.runspec import RunSpec
from vramtui.tui.prediction import breakdown_rows

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"
SAVED = Path(__file__).parent / "fixtures" / "saved"
SPLIT = ev.WeightSplit(
    params=1000, quantized_params=800, packed_bytes=400, state_bytes=50, full_bytes=400,
    kept={"embeddings": 300, "norms": 100},
)  # fmt: skip


def loaded(split: ev.WeightSplit | None = SPLIT, quant: str = "nf4") -> ev.Loaded:
    weights = split.total_bytes if split else 2000
    storage = "quanto int4, up to 128 newest tokens in float16"
    return ev.Loaded(weights, 1000, "float16", 128, 2, 64, 2, 16, 8, 0.1, "llama",
                     quant=quant, split=split, kv_storage=storage)  # fmt: skip


def session_with(event: ev.Loaded) -> Session:
    session = Session(RunSpec(model="tiny", quant="nf4", tokens=2), t0=0.0)
    session.apply(ev.Hello(1, "cuda:0", "cuda", "GPU", None, 10**9, "torch.cuda", {}))
    session.apply(event)
    for token in (0, 1):
        session.apply(ev.Sample(token, 1.0 + token, "decode", 2000, 4096, 3000, 64))
    return session


def test_loaded_event_carries_the_split_over_the_wire() -> None:
    event = loaded()
    back = ev.decode(ev.encode(event))
    assert back == event and isinstance(back, ev.Loaded)
    assert isinstance(back.split, ev.WeightSplit) and back.split.total_bytes == 850


def test_summary_saves_the_quantization_and_reads_it_back_typed() -> None:
    view = session_with(loaded()).snapshot()
    saved = summary(view)
    assert saved["quant"] == "nf4"
    assert saved["weights_split"]["packed_bytes"] == 400
    assert saved["bytes_per_param_weights"] == 0.85
    assert saved["bytes_per_param_peak_reserved"] == 4.096
    assert saved["kv_cache_storage"].startswith("quanto int4")
    typed = read_summary(json.loads(json.dumps(saved)))
    assert typed.quant == "nf4" and typed.weights_split == SPLIT
    assert typed.bytes_per_param_weights == 0.85
    # a session rebuilt from its summary saves the same
    assert summary(view_from(saved, []))["weights_split"] == saved["weights_split"]


def test_summaries_saved_before_the_quant_fields_read_back_unquantized() -> None:
    saved = json.loads((SAVED / "static-cache-run.json").read_text())
    assert "quant" not in saved and "weights_split" not in saved
    typed = read_summary(saved)
    assert typed.quant == "none" and typed.weights_split is None and typed.kv_cache_storage == ""
    labels = [label for label, _ in fact_rows(typed)]
    assert "quantization" not in labels and "bytes/param (weights)" not in labels


def test_text_summary_shows_the_split_and_bytes_per_param() -> None:
    rows = dict(fact_rows(read_summary(summary(session_with(loaded()).snapshot()))))
    assert rows["quantization"] == "nf4"
    stored = rows["weights as stored"]
    assert stored.startswith("800 of 1.00K params quantized")
    assert "packed 400 B" in stored and "quant state 50 B" in stored
    assert "embeddings 300 B" in stored and "norms 100 B" in stored
    assert rows["KV cache stored"].startswith("quanto int4")
    assert rows["bytes/param (weights)"] == "0.85"
    assert rows["bytes/param (peak reserved)"] == "4.10"


def test_breakdown_splits_quantized_weights_into_parts_that_sum_to_them() -> None:
    breakdown = measured_breakdown(session_with(loaded()).snapshot(), "latest")
    assert breakdown is not None and breakdown.weights_bytes == 850
    rows = dict(breakdown_rows(breakdown))
    assert "weights" not in rows
    assert (rows["weights full"], rows["weights packed"], rows["quant state"]) == (
        400,
        400,
        50,
    )
    # the comparison views keep one weights row
    assert breakdown.components()[0] == ("weights", 850)
    plain = measured_breakdown(session_with(loaded(None, "none")).snapshot(), "latest")
    assert plain is not None and plain.weights_split is None
    assert dict(breakdown_rows(plain))["weights"] == 2000
    unquantized = replace(SPLIT, quantized_params=0, packed_bytes=0, state_bytes=0)
    assert (
        measured_breakdown(session_with(loaded(unquantized, "none")).snapshot()).weights_split
        is None
    )  # type: ignore[union-attr]  # noqa: E501


def test_quantized_cache_counts_its_packed_states_scales_and_residual() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("optimum.quanto")
    from transformers import LlamaConfig, QuantizedCache

    from vramtui.measure.engine.sampler import cache_bytes

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                         num_hidden_layers=1, intermediate_size=128)  # fmt: skip
    cache = QuantizedCache(backend="quanto", config=config, nbits=4, residual_length=128)
    full = torch.randn(1, 2, 256, 16)
    cache.update(full, full.clone(), 0)  # the prompt: quantized at once
    step = torch.randn(1, 2, 1, 16)
    cache.update(step, step.clone(), 0)  # a decode step: kept in the residual window
    layer = cache.layers[0]
    residual = 2 * 1 * 2 * 1 * 16 * 4
    packed = 2 * 256 * 2 * 16 // 2  # keys and values, two 4-bit values a byte
    counted = cache_bytes(cache)
    assert counted is not None and layer.keys.shape[-2] == 1
    assert counted > packed + residual  # and the scales and shifts
    assert counted < 2 * full.numel() * 4 // 4  # far below the float32 cache


@pytest.mark.engine
@pytest.mark.slow
def test_a_quantized_run_on_the_cpu_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "run.json"
    code, out, err = run_cli(
        capsys, "run", "--config", str(TINY_LLAMA), "--quant", "nf4", "--double-quant",
        "--cache", "quantized", "--device", "cpu", "--tokens", "4", "--json", str(json_path),
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads(json_path.read_text())
    assert saved["quant"] == "nf4+dq" and saved["tokens_generated"] == 4
    split = saved["weights_split"]
    assert split["packed_bytes"] * 2 == split["quantized_params"] > 0
    assert split["state_bytes"] > 0 and split["kept"]["lm_head"] > 0
    assert (
        saved["weights_bytes"] == split["packed_bytes"] + split["state_bytes"] + split["full_bytes"]
    )
    assert saved["kv_cache_storage"] == "quanto int4, up to 128 newest tokens in float32"
    assert saved["kv_cache_bytes_final"] > 0
    assert "weights as stored" in out and "KV cache stored" in out


def test_quantized_cache_is_transformers_own_with_quanto_and_the_bits() -> None:
    from types import SimpleNamespace

    pytest.importorskip("torch")
    from vramtui.measure.engine.model import generate_kwargs

    model = SimpleNamespace(generation_config=None, config=SimpleNamespace(pad_token_id=0))
    asked = generate_kwargs(model, 3, "quantized", 2)
    assert asked["cache_implementation"] == "quantized"
    assert asked["cache_config"] == {"backend": "quanto", "nbits": 2, "residual_length": 128}
    assert "cache_config" not in generate_kwargs(model, 3, "static")


def test_quantized_cache_without_its_backend_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramtui.runspec import quant

    assert quant.installed("no_such_parent.child") is False  # its parent missing: no error
    monkeypatch.setattr(quant, "installed", lambda package: package != "optimum.quanto")
    code, out, err = run_cli(capsys, "run", "--cache", "quantized", "--tokens", "2")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        'vramtui: --cache quantized needs optimum-quanto: pip install -e ".[quant]"'
    ]


def test_the_run_screen_says_how_weights_and_cache_are_stored() -> None:
    from vramtui.tui.prediction import stored_as

    assert stored_as(loaded()) == " · weights nf4 · KV quanto int4"
    assert stored_as(replace(loaded(None, "none"), kv_storage="")) == ""
    assert stored_as(None) == ""
