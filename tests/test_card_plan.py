"""The start screen's "plan for: <card>" marks, as `vramtui fit` answers them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import run_cli

from vramtui.analysis.card_plan import CatalogueMark, plan_for_card, setting_of
from vramtui.models.cards import card_target, lookup_card
from vramtui.runspec import RunSpec


def test_the_marks_are_fits_answers(capsys: pytest.CaptureFixture[str]) -> None:
    spec = RunSpec(model="opt-1.3b", tokens=1000, prompt_tokens=8, batch=2)
    names = ["opt-1.3b", "opt-13b", "llama-3.1-8b"]
    marks = plan_for_card(card_target(lookup_card("rtx-4090")), spec, names)
    code, out, _ = run_cli(
        capsys, "fit", "--gpu", "rtx-4090", "--filter", "opt-1", "--tokens", "1000",
        "--batch", "2", "--json",
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
    code, out, _ = run_cli(
        capsys, "fit", "--gpu", "t4", "--filter", "opt-13b", "--tokens", "1000",
        "--batch", "1", "--quant", "nf4", "--json",
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
    assert dq.max_context > plain.max_context  # the quantized absmax leaves more room


def test_a_kv_cache_other_than_the_dynamic_one_is_not_planned() -> None:
    spec = RunSpec(model="opt-1.3b", tokens=1000, cache="static")
    marks = plan_for_card(card_target(lookup_card("rtx-4090")), spec, ["opt-1.3b", "opt-13b"])
    assert {m.text for m in marks.values()} == {"–"}
    assert all(m.note == "KV cache static: not planned (dynamic only)" for m in marks.values())
