"""The start screen's "plan for: <card>" marks, as `vramtui fit` answers them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import run_cli

from vramtui.analysis.card_plan import CatalogueMark, plan_for_card, setting_of, train_setting
from vramtui.models.cards import card_target, lookup_card
from vramtui.predict.training.planner import TrainPlanner
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec


def test_the_marks_are_fits_answers(capsys: pytest.CaptureFixture[str]) -> None:
    spec = RunSpec(model="opt-1.3b", tokens=1000, prompt_tokens=8, batch=2)
    names = ["opt-1.3b", "opt-13b", "llama-3.1-8b"]
    marks = plan_for_card(card_target(lookup_card("rtx-4090")), spec, names)
    # the marks plan the catalogue as `vramtui fit` over it does (replays strided)
    code, out, _ = run_cli(
        capsys, "fit", "--gpu", "rtx-4090", "--tokens", "1000", "--batch", "2", "--json",
    )  # fmt: skip
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    for name in ("opt-1.3b", "opt-13b"):
        mark, row = marks[name], rows[name]
        assert (mark.fits, mark.max_context, mark.max_batch) == (
            row["fits"], row["max_context"], row["max_batch"],
        )  # fmt: skip
    assert list(marks) == names
    assert marks["opt-13b"].text == "no"
    assert marks["opt-1.3b"].text.startswith("fits · ")


def test_a_quantized_precision_is_marked_as_fit_plans_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = RunSpec(model="opt-13b", tokens=1000, prompt_tokens=8, batch=1, quant="nf4")
    (mark,) = plan_for_card(card_target(lookup_card("t4")), spec, ["opt-13b"]).values()
    code, out, _ = run_cli(  # over the catalogue, as the marks plan it
        capsys, "fit", "--gpu", "t4", "--tokens", "1000", "--batch", "1", "--quant", "nf4",
        "--json",
    )  # fmt: skip
    assert code == 0
    (row,) = [r for r in json.loads(out) if r["model"] == "opt-13b"]
    assert row["quant"] == "nf4" and row["fits"] is True  # 26 GB in fp16, not on a T4
    assert (mark.fits, mark.max_context, mark.max_batch) == (
        row["fits"], row["max_context"], row["max_batch"],
    )  # fmt: skip


def test_the_forms_settings_are_the_searchs() -> None:
    spec = RunSpec(tokens=300, prompt_tokens=50, batch=3, attn="eager")
    setting = setting_of(spec)
    assert (setting.context, setting.batch, setting.attn, setting.dtype) == (
        350, 3, "eager", "float16",
    )  # fmt: skip
    assert CatalogueMark("x", True, 47_187).text == "fits · 47.2K ctx"


def test_the_forms_double_quant_is_planned_with_its_method() -> None:
    spec = RunSpec(model="opt-13b", tokens=1000, prompt_tokens=8, quant="nf4", double_quant=True)
    assert setting_of(spec).double_quant
    assert not setting_of(RunSpec(quant="int8", double_quant=True)).double_quant
    card = card_target(lookup_card("rtx-3060"))
    (dq,) = plan_for_card(card, spec, ["opt-13b"]).values()
    (plain,) = plan_for_card(card, replace(spec, double_quant=False), ["opt-13b"]).values()
    # the quantized absmax leaves more room: a longer context, or where both reach the
    # model's positions, a larger batch
    assert (dq.max_context, dq.max_batch) > (plain.max_context, plain.max_batch)


def test_a_kv_cache_other_than_the_dynamic_one_is_not_planned() -> None:
    spec = RunSpec(model="opt-1.3b", tokens=1000, cache="static")
    marks = plan_for_card(card_target(lookup_card("rtx-4090")), spec, ["opt-1.3b", "opt-13b"])
    assert {m.text for m in marks.values()} == {"–"}
    assert all(m.note == "KV cache static: not planned (dynamic only)" for m in marks.values())


def test_a_fine_tuning_recipe_is_marked_as_fit_plans_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = RunSpec(model="llama-3.2-1b", batch=2, dtype="bfloat16")
    train = TrainSpec(base=base, method="lora", seq=1024)
    names = ["llama-3.2-1b", "llama-3.2-3b"]
    marks = plan_for_card(card_target(lookup_card("rtx-4090")), base, names, train=train)
    code, out, _ = run_cli(
        capsys, "fit", "--gpu", "rtx-4090", "--workload", "lora", "--filter", "llama-3.2",
        "--context", "1024", "--batch", "2", "--json",
    )  # fmt: skip
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    for name in names:
        mark, row = marks[name], rows[name]
        assert row["workload"] == "lora" and mark.basis == "approximate"
        assert (mark.fits, mark.max_context, mark.max_batch) == (
            row["fits"], row["max_context"], row["max_batch"],
        )  # fmt: skip
    assert marks["llama-3.2-1b"].max_batch > marks["llama-3.2-3b"].max_batch > 0
    assert marks["llama-3.2-1b"].text.endswith(" seq")  # the sequence a step trains


def test_a_recipes_sequences_are_the_searchs_context() -> None:
    train = TrainSpec(base=RunSpec(batch=3, attn="eager"), method="qlora", seq=2048)
    setting = train_setting(train)
    assert (setting.workload, setting.context, setting.batch, setting.attn) == (
        "qlora", 2048, 3, "eager",
    )  # fmt: skip
    assert (setting.dtype, setting.quant) == ("bfloat16", "none")  # qlora's base: its own
    assert train_setting(replace(train, seq=1)).context == 1


def test_a_plan_stops_between_models_when_asked() -> None:
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2  # asked before each model: two are planned

    spec = RunSpec(model="opt-1.3b", tokens=1000)
    names = ["opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b"]
    marks = plan_for_card(card_target(lookup_card("t4")), spec, names, stop=stop)
    assert list(marks) == names[:2] and len(asked) == 3


def test_a_model_whose_step_needs_a_trace_is_marked_with_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TrainPlanner, "_written", lambda *args: None)  # no approximate estimate
    train = TrainSpec(base=RunSpec(model="opt-125m"), method="lora", seq=256)
    (mark,) = plan_for_card(
        card_target(lookup_card("t4")), train.base, ["opt-125m"], train=train
    ).values()
    assert mark.fits is None and mark.text == "–"
    assert (
        mark.note
        == "opt-125m: its step needs a trace (`vramtui fit --model opt-125m --workload …`)"
    )
