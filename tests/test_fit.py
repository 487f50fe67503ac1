"""`vramtui fit`: the card table, the search's answers against the estimator, --json rows,
--check's exit codes, and bad input as one line, exit 2."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from helpers import run_cli

from vramtui.measure import nvml
from vramtui.models.cards import (
    CARDS,
    H100_VISIBLE_BYTES,
    card_for_device,
    card_target,
    lookup_card,
)
from vramtui.models.catalogue import CATALOGUE, Entry
from vramtui.predict.fit_search import Budget, Search, gallop, largest
from vramtui.predict.planner import GeneratePlanner, PlannedPeak, Setting

JSON_FIELDS = (
    "model", "quant", "workload", "fits", "max_context", "max_batch", "peak_total_bytes",
    "headroom_bytes", "binding",
)  # fmt: skip
# Real catalogue models of four kinds: OPT's exact record, a gated-MLP config, a config
# with sliding layers, GPT-NeoX.
MODELS = ("opt-1.3b", "llama-3.2-1b", "gemma-2-2b", "pythia-410m")


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "gpus", lambda: [])


class ExactPlanner(GeneratePlanner):
    """Every peak replayed: the reference the cheap search is held to."""

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        return super().peak(model, setting, exact=True)


def _budget_at(model: Entry, setting: Setting) -> Budget:
    """A budget that the setting just fits (its exact need, to the byte)."""
    need = GeneratePlanner().peak(model, setting).need_bytes
    return Budget(need, 0, 0)


def _need(model: Entry, setting: Setting) -> int:
    return GeneratePlanner().peak(model, setting).need_bytes


# -- the card table


def test_every_card_sees_less_than_it_is_sold_with() -> None:
    for card in CARDS.values():
        assert 0 < card.total_bytes < card.memory_bytes, card.name
        assert card.context_bytes > 0


def test_measured_cards_use_the_measured_total() -> None:
    h100 = lookup_card("H100")
    assert h100.measured and h100.total_bytes == H100_VISIBLE_BYTES
    assert not lookup_card("rtx-4090").measured
    assert card_for_device("NVIDIA H100 80GB HBM3") is h100
    assert card_for_device("Some Other GPU") is None


def test_card_names_as_people_type_them() -> None:
    assert lookup_card("RTX 4090") is lookup_card("rtx_4090") is lookup_card("4090")


def test_unknown_card_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fit", "--gpu", "rtx-4909")
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1
    assert "did you mean rtx-4090" in err


# -- the search


def test_largest_finds_the_last_that_fits() -> None:
    for limit in (0, 1, 7, 500, 999, 1000):

        def over(x: int, at: int = limit) -> int:
            return x - at

        assert largest(over, 1, 1000) == min(limit, 1000)


def test_gallop_finds_the_last_that_fits_without_an_upper_end() -> None:
    for limit in (0, 1, 2, 3, 5, 100, 1000, 65535, 70000):

        def over(x: int, at: int = limit) -> int:
            return x - at

        assert gallop(over, 65536) == min(limit, 65536)


# The quantized methods the search is held to (bitsandbytes' and torchao's).
QUANTIZED = [("int8", False), ("nf4", True), ("fp4", False), ("int8-wo", False)]


@pytest.mark.parametrize("grow", ["tokens", "prompt"])
@pytest.mark.parametrize("name", MODELS)
def test_max_context_fits_and_one_more_token_does_not(name: str, grow: str) -> None:
    _max_context_fits(name, Setting(prompt_tokens=300, tokens=300, batch=2, attn="eager",
                                    grow=grow))  # fmt: skip


@pytest.mark.parametrize(("quant", "dq"), QUANTIZED)
@pytest.mark.parametrize("name", MODELS)
def test_quantized_max_context_fits_and_one_more_token_does_not(
    name: str, quant: str, dq: bool
) -> None:
    _max_context_fits(name, Setting(quant=quant, double_quant=dq, prompt_tokens=300,
                                    tokens=300, batch=2))  # fmt: skip


def _max_context_fits(name: str, asked: Setting) -> None:
    model = CATALOGUE[name]
    budget = _budget_at(model, asked)
    search = Search(GeneratePlanner(), budget)
    most = search.max_context(model, asked)
    assert most >= asked.context
    at_most = asked.with_context(most)
    assert at_most.context == most and at_most.held == asked.held
    assert _need(model, at_most) <= budget.usable_bytes
    if most < GeneratePlanner().positions(model):
        assert _need(model, asked.with_context(most + 1)) > budget.usable_bytes


@pytest.mark.parametrize(("quant", "dq"), [("none", False), *QUANTIZED])
@pytest.mark.parametrize("name", MODELS)
def test_max_batch_fits_and_one_more_row_does_not(name: str, quant: str, dq: bool) -> None:
    model = CATALOGUE[name]
    asked = Setting(quant=quant, double_quant=dq, prompt_tokens=8, tokens=200, batch=3)
    budget = _budget_at(model, asked)
    most = Search(GeneratePlanner(), budget).max_batch(model, asked)
    assert most >= 3
    assert _need(model, asked.with_batch(most)) <= budget.usable_bytes
    assert _need(model, asked.with_batch(most + 1)) > budget.usable_bytes


@pytest.mark.parametrize("name", MODELS)
def test_the_cheap_search_answers_as_the_replayed_one(name: str) -> None:
    model = CATALOGUE[name]
    card = card_target(lookup_card("rtx-3060"))
    budget = Budget(card.total_bytes, card.context_bytes, 0)
    for asked in (Setting(), Setting(tokens=200, batch=4), Setting(attn="eager", batch=2)):
        cheap = Search(GeneratePlanner(), budget).row(model, asked)
        exact = Search(ExactPlanner(), budget, exact_rows=True).row(model, asked)
        assert (cheap.fits, cheap.max_context, cheap.max_batch) == (
            exact.fits,
            exact.max_context,
            exact.max_batch,
        )


def test_weights_bind_where_they_alone_do_not_fit() -> None:
    model = CATALOGUE["opt-1.3b"]
    peak = GeneratePlanner().peak(model, Setting())
    row = Search(GeneratePlanner(), Budget(peak.weights_bytes - 1, 0, 0)).row(model, Setting())
    assert not row.fits and row.binding == "weights"
    assert (row.max_context, row.max_batch) == (0, 0)


def test_the_largest_growing_term_binds_other_workloads_terms_too() -> None:
    peak = PlannedPeak(100, 10, 30, 20, 5, "exact")
    assert peak.binding(50) == "kv cache"
    assert peak.binding(5) == "weights"
    trained = replace(peak, other_terms=(("optimizer states", 40),))
    assert trained.binding(50) == "optimizer states"
    quantizing = replace(peak, load_peak_bytes=60)  # the quantizer's copies at load
    assert quantizing.binding(50) == "loading" and quantizing.binding(70) == "kv cache"


def test_a_context_past_the_models_positions_does_not_fit_as_asked() -> None:
    model = CATALOGUE["opt-125m"]
    search = Search(GeneratePlanner(), Budget(10**12, 0, 0))
    row = search.row(model, Setting(tokens=5000))
    assert row.setting.context == row.positions == row.max_context
    assert not row.fits and row.binding == "positions"
    longest = search.row(model, Setting(prompt_tokens=3000, tokens=10))
    assert (longest.setting.prompt_tokens, longest.setting.tokens) == (row.positions - 1, 1)
    assert not longest.fits
    inside = search.row(model, Setting(tokens=200))
    assert inside.fits and inside.binding == "positions"


# -- the command


def _rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    code, out, err = run_cli(capsys, "fit", *args, "--json")
    assert code == 0, err
    rows: list[dict] = json.loads(out)
    return rows


def test_json_rows_carry_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(capsys, "--gpu", "t4", "--filter", "pythia")
    pythia = [e.name for e in CATALOGUE.values() if e.family == "Pythia"]
    assert [r["model"] for r in rows] == pythia
    for row in rows:
        assert set(JSON_FIELDS) <= set(row)
        assert row["fits"] == (row["headroom_bytes"] >= 0)
        assert row["peak_total_bytes"] == row["need_bytes"] + row["context_overhead_bytes"]
        assert row["fits"] == (row["max_batch"] >= 1)
    assert {r["fits"] for r in rows} == {True, False}


def test_json_headroom_is_the_margin_and_the_context_taken_from_the_card(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = _rows(capsys, "--memory", "16GiB", "--model", "opt-350m", "--margin", "0%")[0]
    kept = _rows(capsys, "--memory", "16GiB", "--model", "opt-350m", "--margin", "1GiB",
                 "--context-overhead", "1GiB")  # fmt: skip
    assert (
        plain["usable_bytes"] - kept[0]["usable_bytes"]
        == 2 * 2**30 - plain["context_overhead_bytes"]
    )
    assert kept[0]["context_overhead_source"] == "--context-overhead"


def test_check_exits_0_when_it_fits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "--gpu", "h100", "--model", "opt-125m", "--check")
    assert code == 0
    assert out.startswith("fits: opt-125m") and "to spare" in out


def test_check_exits_3_with_how_much_when_it_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "--gpu", "t4", "--model", "opt-13b", "--check")
    assert code == 3
    assert len(out.strip().splitlines()) == 1
    assert out.startswith("does not fit: opt-13b") and "short by" in out
    assert "weights binds" in out


def test_check_follows_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(capsys, "--gpu", "rtx-4090", "--model", "llama-3.1-8b")
    most = rows[0]["max_context"]
    assert 2008 < most < rows[0]["positions"]
    args = ("fit", "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--check", "--context")
    assert run_cli(capsys, *args, str(most))[0] == 0
    assert run_cli(capsys, *args, str(most + 1))[0] == 3


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--gpu", "h100", "--check"), "--check takes one model"),
        (("--gpu", "h100", "-m", "opt-125m", "--context", "4096", "--check"), "2048 positions"),
        (("--gpu", "h100", "--quant", "int9"), "unknown --quant"),
        (("--gpu", "h100", "--quant", "int8+dq"), "double quant applies to nf4 and fp4"),
        (("--gpu", "h100", "--quant", "none,int8", "--double-quant"), "--double-quant applies"),
        (("--gpu", "h100", "--workload", "lora", "--quant", "int8"), "takes no --quant"),
        (("--gpu", "h100", "--margin", "120%"), "--margin"),
        (("--gpu", "h100", "--context", "8"), "the context must exceed the prompt"),
        (("--gpu", "h100", "--batch", "0"), "--batch must be positive"),
        (("--gpu", "h100", "--filter", "no-such-model"), "no catalogue model matches"),
        (("--gpu", "h100", "--memory", "24GiB"), "not allowed with"),
        (("--memory", "24"), "a size needs a unit"),
        (("--memory", "1GiB", "--context-overhead", "1GiB"), "leave the allocator nothing"),
        ((), "no GPU here: pass --gpu"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: str
) -> None:
    code, out, err = run_cli(capsys, "fit", *args)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and said in err


def test_the_gpu_here_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = nvml.GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-0", 85_520_809_984, 0, 85_520_809_984)
    monkeypatch.setattr(nvml, "gpus", lambda: [gpu])
    row = _rows(capsys, "--model", "opt-125m")[0]
    assert row["card_total_bytes"] == H100_VISIBLE_BYTES
    other = replace(gpu, name="A GPU not in the table", total=12 * 2**30)
    monkeypatch.setattr(nvml, "gpus", lambda: [other])
    row = _rows(capsys, "--model", "opt-125m")[0]
    assert row["card_total_bytes"] == 12 * 2**30 and "GPU 0" in row["card"]


def test_the_table_says_what_was_assumed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "--gpu", "rtx-4090", "--filter", "opt-1")
    assert code == 0
    assert "assumed" in out and "usable by the allocator" in out
    assert "opt-1.3b" in out and "opt-125m" in out and "basis: exact" in out


# -- quantized weights


def _weights_fit_only_in_nf4(usable: int) -> Entry:
    """A catalogue model whose fp16 weights alone pass `usable` while its nf4 weights
    take under half of it (found from the planner's own figures)."""
    planner = GeneratePlanner()
    for model in CATALOGUE.values():
        fp16 = planner.peak(model, Setting(), exact=False)
        nf4 = planner.peak(model, Setting(quant="nf4"), exact=False)
        if fp16.weights_bytes > usable and 2 * nf4.weights_bytes < usable:
            return model
    raise AssertionError("no catalogue model fits only in nf4")


def test_quantized_rows_fit_where_fp16_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    card = card_target(lookup_card("rtx-4090"))
    model = _weights_fit_only_in_nf4(card.total_bytes - card.context_bytes)
    rows = _rows(capsys, "--gpu", "rtx-4090", "--model", model.name, "--quant", "none,int8,nf4")
    by_quant = {r["quant"]: r for r in rows}
    assert list(by_quant) == ["none", "int8", "nf4"]
    assert not by_quant["none"]["fits"] and by_quant["none"]["binding"] == "weights"
    assert by_quant["nf4"]["fits"] and by_quant["nf4"]["max_context"] >= 2008
    assert by_quant["nf4"]["weights_bytes"] < by_quant["int8"]["weights_bytes"]
    split = by_quant["nf4"]["weights_split"]
    assert sum(split.values()) == by_quant["nf4"]["weights_bytes"]
    assert by_quant["none"]["weights_split"] == {}


def test_double_quant_stores_less_than_plain_nf4(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(capsys, "--gpu", "t4", "--model", "llama-3.2-1b", "--quant", "nf4,nf4+dq")
    plain, dq = rows
    assert (plain["double_quant"], dq["double_quant"]) == (False, True)
    assert dq["weights_bytes"] < plain["weights_bytes"]
    flag = _rows(capsys, "--gpu", "t4", "--model", "llama-3.2-1b", "--quant", "nf4",
                 "--double-quant")  # fmt: skip
    assert flag[0]["weights_bytes"] == dq["weights_bytes"]


def test_check_says_how_the_quantized_weights_split(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "--gpu", "t4", "--model", "llama-3.1-70b",
                           "--quant", "nf4", "--check")  # fmt: skip
    assert code == 3 and len(out.strip().splitlines()) == 1
    assert "(nf4," in out and "packed" in out and "quantization state" in out


def test_the_table_notes_the_cuda_only_methods(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "--gpu", "l4", "--model", "qwen2.5-0.5b",
                           "--quant", "int8,int4-wo,fp8")  # fmt: skip
    assert code == 0
    assert "int4-wo: CUDA GPUs only" in out and "fp8: CUDA GPUs only" in out
    assert "int8: CUDA GPUs only" not in out


def test_trace_traces_generation_at_each_size_the_search_asks_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtui.predict import planner

    asked: list[tuple[int, int, bool]] = []

    def traced(*args: object, **kwargs: Any) -> None:  # none made: the row approximates
        asked.append((kwargs["prompt"], kwargs["batch"], kwargs["only_cached"]))

    monkeypatch.setattr(planner, "trace_model", traced)
    planner._peak.cache_clear()
    planner._architecture.cache_clear()
    flags = ("--gpu", "t4", "--model", "qwen2.5-0.5b", "--batch", "2")
    assert _rows(capsys, *flags)[0]["basis"] == "approximate"
    assert asked and all(only for _, _, only in asked)  # cached traces only
    asked.clear()
    _rows(capsys, *flags, "--trace")
    assert asked and not any(only for _, _, only in asked)  # each one traced now
    assert {b for _, b, _ in asked} > {2}  # the batches the search probed, each its own
