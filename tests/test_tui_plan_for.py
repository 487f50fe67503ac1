"""The start screen's "Plan for": a card chosen by keys puts each catalogue model's mark
(`vramtui fit`'s answer at the form's settings) in the model list, follows the form as
it changes, and goes when "this machine" is chosen again. No engine: the app's runs
would be replays, and none is started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import CPU_ONLY, wait_for
from textual.dom import DOMNode
from textual.pilot import Pilot
from textual.widgets import Select

from vramtui.analysis.card_plan import CatalogueMark, plan_for_card
from vramtui.models.cards import CARDS, GiB, Target, card_target
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.tracing.traces import TraceError
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui import card_plan_view
from vramtui.tui.app import VramApp
from vramtui.tui.card_plan_view import (
    FINE_TUNE_BASIS,
    HERE,
    PLAN_OPTIONS,
    WAITING,
    CardPlanned,
    PlanAsk,
    PlanInfo,
    ask_of,
    assumptions,
    plan_marks,
)
from vramtui.tui.screens.start_screen import StartScreen
from vramtui.tui.widgets.model_table import ModelTable
from vramtui.units import format_bytes

Scenario = Callable[[Pilot, StartScreen], Awaitable[None]]
Stop = Callable[[], bool]
MODELS = ["opt-1.3b", "opt-13b", "llama-3.1-8b", "qwen3-4b"]


@pytest.fixture(autouse=True)
def _no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a plain terminal runs it: NO_COLOR and TERM=dumb."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")


def app_for(spec: RunSpec, out: Path) -> VramApp:
    items = synthetic_run("opt-125m", 10, upto=5, backend="cpu")
    return VramApp(
        spec, out_dir=out, list_devices=lambda: CPU_ONLY,
        make_recorder=lambda s: ReplayRecorder(s, items, hold=True),
    )  # fmt: skip


async def choose_card(pilot: Pilot, screen: StartScreen, card: str) -> None:
    """Open Plan for and move to `card` by keys, as a user would."""
    select = screen.query_one("#plan", Select)
    values = [v for _, v in PLAN_OPTIONS]
    steps = values.index(card) - values.index(str(select.value))
    select.focus()
    await pilot.press("enter", *(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
    await pilot.pause()
    assert select.value == card


async def type_into(pilot: Pilot, screen: StartScreen, field: str, text: str) -> None:
    screen.query_one(f"#{field}").focus()
    await pilot.press("ctrl+u", "end", "ctrl+u", *text)


async def planned(pilot: Pilot, screen: StartScreen, card: str) -> None:
    """Until the marks shown answer the form as it is now, for `card`."""
    info, table = screen.query_one(PlanInfo), screen.query_one(ModelTable)

    def current() -> bool:
        run = screen.form.run
        wanted = ask_of(card, run.spec if run else None)
        return info.planned == wanted and not table.pending

    await wait_for(pilot, current)
    await pilot.pause()


async def planning(pilot: Pilot, card: str) -> StartScreen:
    """The start screen once its first marks for `card`, chosen by keys, are in."""
    screen = pilot.app.screen
    assert isinstance(screen, StartScreen)
    await pilot.pause()
    await choose_card(pilot, screen, card)
    await planned(pilot, screen, card)
    return screen


def expected(screen: StartScreen, card: str) -> dict[str, CatalogueMark]:
    """plan_for_card's marks, computed here, at the form's settings."""
    return plan_for_card(card_target(CARDS[card]), screen.read_spec(), MODELS)


def shown(screen: StartScreen) -> dict[str, str]:
    table = screen.query_one(ModelTable)
    return {name: table.mark_text(name) for name in MODELS}


def columns(screen: DOMNode) -> list[str]:
    return [str(c.label) for c in screen.query_one(ModelTable).columns.values()]


def test_a_card_marks_the_catalogue_and_follows_the_form(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-1.3b", tokens=1000, prompt_tokens=8, device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert columns(app.screen) == ["family", "model", "params"]
            screen = await planning(pilot, "rtx-4090")
            assert columns(screen) == ["family", "model", "RTX 4090"]
            at_batch_1 = shown(screen)
            assert at_batch_1 == {n: m.text for n, m in expected(screen, "rtx-4090").items()}
            info = str(screen.query_one(PlanInfo).render())
            assert assumptions(CARDS["rtx-4090"]) in info and "5% margin" in info

            await type_into(pilot, screen, "batch", "8")
            await planned(pilot, screen, "rtx-4090")
            assert screen.read_spec().batch == 8
            assert shown(screen) == {n: m.text for n, m in expected(screen, "rtx-4090").items()}
            assert shown(screen) != at_batch_1  # a larger batch leaves less context

            await type_into(pilot, screen, "tokens", "30")
            await planned(pilot, screen, "rtx-4090")
            assert screen.read_spec().tokens == 30
            assert shown(screen) == {n: m.text for n, m in expected(screen, "rtx-4090").items()}

            await choose_card(pilot, screen, "t4")
            # at once: what the plan assumes of the T4; no RTX 4090 marks under its name
            assert assumptions(CARDS["t4"]) in str(screen.query_one(PlanInfo).render())
            table = screen.query_one(ModelTable)
            assert not table.pending or set(shown(screen).values()) == {""}
            await planned(pilot, screen, "t4")
            assert columns(screen) == ["family", "model", "T4"]
            assert shown(screen) == {n: m.text for n, m in expected(screen, "t4").items()}

            await choose_card(pilot, screen, HERE)
            await wait_for(pilot, lambda: columns(screen) == ["family", "model", "params"])
            assert not screen.query_one("#models").has_class("-plan")
            assert str(screen.query_one(PlanInfo).render()) == ""

    asyncio.run(scenario())


def with_plan(tmp_path: Path, card: str, body: Scenario) -> None:
    """`body` on the start screen of opt-1.3b, 1000 tokens, once `card`'s marks are in."""
    app = app_for(RunSpec(model="opt-1.3b", tokens=1000, device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await body(pilot, await planning(pilot, card))

    asyncio.run(scenario())


def test_a_result_the_form_no_longer_asks_for_is_dropped(tmp_path: Path) -> None:
    async def body(pilot: Pilot, screen: StartScreen) -> None:
        before = shown(screen)
        info = screen.query_one(PlanInfo)
        old = ask_of("rtx-4090", replace(screen.read_spec(), batch=64))
        stale = {n: CatalogueMark(n, False) for n in MODELS}
        info.post_message(CardPlanned(old, stale, ""))  # as a slow worker would, late
        await pilot.pause()
        await pilot.pause()
        assert shown(screen) == before
        assert info.planned is not None and info.planned.setting is not None
        assert info.planned.setting.batch == 1

    with_plan(tmp_path, "rtx-4090", body)


def test_a_static_cache_is_marked_not_planned(tmp_path: Path) -> None:
    async def body(pilot: Pilot, screen: StartScreen) -> None:
        screen.query_one("#cache", Select).value = "static"
        await pilot.pause()  # the form has read it
        await planned(pilot, screen, "l4")
        note = expected(screen, "l4")["opt-1.3b"].note
        assert note and set(shown(screen).values()) == {"–"}
        assert note in str(screen.query_one(PlanInfo).render())
        assert screen.query_one(ModelTable).border_subtitle == note

    with_plan(tmp_path, "l4", body)


def trained(screen: StartScreen, card: str) -> dict[str, str]:
    """plan_for_card's fine-tuning marks, computed here, for the form's recipe."""
    train = screen.train.spec
    assert train is not None
    marks = plan_for_card(card_target(CARDS[card]), train.base, MODELS, train=train)
    return {n: m.text for n, m in marks.items()}


def test_a_fine_tuning_recipe_is_planned_as_fit_plans_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def few(target: Target, spec: RunSpec, **kwargs: Any) -> dict[str, CatalogueMark]:
        return plan_for_card(target, spec, MODELS, **kwargs)  # MODELS, not all 48

    monkeypatch.setattr(card_plan_view, "plan_for_card", few)

    async def recipe(pilot: Pilot, screen: StartScreen, method: str) -> None:
        info = screen.query_one(PlanInfo)
        screen.query_one("#method", Select).value = method

        def current() -> bool:
            train = screen.train.spec
            if train is None or train.method != method:
                return False  # the form has not read the method yet
            return info.planned == ask_of("l4", train.base, train)

        await wait_for(pilot, current)
        await pilot.pause()
        assert info.planned is not None and info.planned.setting is not None
        assert info.planned.setting.workload == method

    async def body(pilot: Pilot, screen: StartScreen) -> None:
        screen.query_one("#workload", Select).value = "fine-tune"
        await recipe(pilot, screen, "lora")
        lora = shown(screen)
        assert lora == trained(screen, "l4") and set(lora.values()) != {"–"}
        assert FINE_TUNE_BASIS in str(screen.query_one(PlanInfo).render())
        assert screen.query_one(ModelTable).border_subtitle == FINE_TUNE_BASIS
        await recipe(pilot, screen, "full")
        assert shown(screen) == trained(screen, "l4") != lora  # all of it trained: less fits
        await type_into(pilot, screen, "seq", "x")
        table = screen.query_one(ModelTable)
        await wait_for(pilot, lambda: table.border_subtitle == "plan " + WAITING)
        assert screen.train.spec is None

    with_plan(tmp_path, "l4", body)


def test_a_form_with_an_error_keeps_the_marks_dimmed_till_it_reads(tmp_path: Path) -> None:
    async def body(pilot: Pilot, screen: StartScreen) -> None:
        table, before = screen.query_one(ModelTable), shown(screen)
        await type_into(pilot, screen, "batch", "x")
        await wait_for(pilot, lambda: table.pending)
        assert screen.form.run is None and shown(screen) == before  # kept, dimmed
        assert table.border_subtitle == "plan " + WAITING
        assert WAITING in str(screen.query_one(PlanInfo).render())
        await type_into(pilot, screen, "batch", "2")
        await planned(pilot, screen, "rtx-4090")
        assert shown(screen) == {n: m.text for n, m in expected(screen, "rtx-4090").items()}

    with_plan(tmp_path, "rtx-4090", body)


def test_a_burst_of_changes_is_planned_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[PlanAsk] = []

    def counted(ask: PlanAsk, stop: Stop) -> tuple[dict[str, CatalogueMark], str]:
        asked.append(ask)
        return plan_marks(ask, stop)

    async def body(pilot: Pilot, screen: StartScreen) -> None:
        # a window wide enough for three changes on a busy machine
        monkeypatch.setattr(card_plan_view, "DEBOUNCE_S", 2.0)
        monkeypatch.setattr(card_plan_view, "plan_marks", counted)
        screen.query_one("#batch").focus()
        await pilot.press("end", "2", "8")  # 1 -> 12 -> 128, each read by the form
        await planned(pilot, screen, "rtx-4090")
        assert screen.read_spec().batch == 128
        assert [a.setting.batch for a in asked if a.setting] == [128]
        assert shown(screen) == {n: m.text for n, m in expected(screen, "rtx-4090").items()}

    with_plan(tmp_path, "rtx-4090", body)


def test_the_plan_says_what_it_assumes_of_each_card() -> None:
    labels = dict((v, label) for label, v in PLAN_OPTIONS)
    assert labels["rtx-4090"] == "RTX 4090 · 24 GB" and labels[HERE] == "this machine"
    assert set(labels) == {HERE, *CARDS}
    for name in ("rtx-4090", "h100"):
        card, target = CARDS[name], card_target(CARDS[name])
        text = assumptions(card)
        word = "measured" if card.measured else "assumed"
        assert text.startswith(f"{labels[name].split(' · ')[0]} ({card.memory_bytes // GiB} GiB): ")
        assert f"{format_bytes(target.total_bytes, 2)} seen ({word})" in text
        assert f"CUDA context {format_bytes(target.context_bytes)} (" in text
        assert text.endswith("5% margin")
    assert "(assumed)" in assumptions(CARDS["rtx-4090"])
    assert "(measured), CUDA context" in assumptions(CARDS["h100"])


def test_a_plan_that_cannot_be_made_marks_every_model_with_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise TraceError("the config has no num_hidden_layers")

    monkeypatch.setattr(card_plan_view, "plan_for_card", refused)
    marks, note = plan_marks(ask_of("t4", RunSpec(model="opt-125m")))
    assert note == "the config has no num_hidden_layers"
    assert {m.text for m in marks.values()} == {"–"} and len(marks) == len(CATALOGUE)
