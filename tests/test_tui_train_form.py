"""The start screen's fine-tuning workload: its rows, the TrainSpec it builds and hands
to the app (AppHost.start_training), and its fields refused in place; the form, taller
than 80x24 with them, scrolls to the field in focus. No engine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import CPU_ONLY, resolved
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static

from vramtui.runspec import RunSpec, quant
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.tui.app import VramApp
from vramtui.tui.screens.start_screen import StartScreen
from vramtui.tui.train_form import TrainValues, read_train


class TrainingApp(VramApp):
    """The app with a trainer that records the recipe it is handed and replays nothing
    (held open, as a run in progress), so no engine starts."""

    training_asked: list[TrainSpec]


def app_for(spec: RunSpec, out: Path) -> TrainingApp:
    asked: list[TrainSpec] = []

    def trainer(run: object, train: TrainSpec) -> ReplayRecorder:
        asked.append(train)
        return ReplayRecorder(train, [], hold=True)

    app = TrainingApp(spec, out_dir=out, list_devices=lambda: CPU_ONLY, make_trainer=trainer)
    app.training_asked = asked
    return app


def text_of(screen: StartScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def fine_tune(pilot: Pilot, app: VramApp) -> StartScreen:
    """The start screen with Fine-tune chosen by keys on Workload."""
    screen = app.screen
    assert isinstance(screen, StartScreen)
    await pilot.pause()
    screen.query_one("#workload", Select).focus()
    await pilot.press("enter", "down", "enter")
    await pilot.pause()
    assert screen.query_one("#workload", Select).value == "fine-tune"
    return screen


async def type_into(pilot: Pilot, screen: StartScreen, field: str, text: str) -> None:
    screen.query_one(f"#{field}", Input).focus()
    await pilot.press("ctrl+u", "end", "ctrl+u", *text)


def shown(screen: StartScreen, field: str) -> bool:
    return bool(screen.query_one(f"#{field}-row").display)


def test_fine_tune_shows_its_rows_and_hands_the_recipe_to_the_app(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", device="cpu", batch=2), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, StartScreen)
            await pilot.pause()
            assert shown(screen, "tokens") and not shown(screen, "seq")
            screen = await fine_tune(pilot, app)
            for field in ("method", "seq", "steps", "optim"):
                assert shown(screen, field)
            for field in ("tokens", "prompt_tokens", "cache"):
                assert not shown(screen, field)
            screen.query_one("#method", Select).value = "lora"
            screen.query_one("#optim", Select).value = "sgd"
            await type_into(pilot, screen, "seq", "256")
            await type_into(pilot, screen, "steps", "5")
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert "no prediction for fine-tuning" in text_of(screen, "#prediction")

    asyncio.run(scenario())
    [spec] = app.training_asked  # handed to the trainer, and nothing else started
    assert (spec.method, spec.seq, spec.steps, spec.optim) == ("lora", 256, 5, "sgd")
    assert spec.base.model == "opt-125m" and spec.base.batch == 2 and spec.base.device == "cpu"


def test_qlora_loads_its_base_in_nf4_and_refuses_another_quant(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", device="cpu", quant="int8"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await fine_tune(pilot, app)
            screen.query_one("#method", Select).value = "qlora"
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert text_of(screen, "#method-error") == (
                "Method qlora loads the base in nf4; drop Quant int8"
            )
            assert app.focused is screen.query_one("#method", Select)
            assert not app.training_asked
            screen.query_one("#quant", Select).value = "none"
            await pilot.pause()
            assert not screen.query_one("#method-error", Static).has_class("-shown")
            await pilot.press("ctrl+r")
            await pilot.pause()

    asyncio.run(scenario())
    [spec] = app.training_asked
    assert (spec.base.quant, spec.base.double_quant, spec.base.dtype) == ("nf4", True, "bfloat16")


def test_the_recipe_fields_are_refused_in_place_and_the_budget_is_not_read(
    tmp_path: Path,
) -> None:
    # 2100 new tokens pass opt-125m's 2048 positions: refused for generation, not read here
    app = app_for(RunSpec(model="opt-125m", device="cpu", tokens=2100), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await fine_tune(pilot, app)
            assert not screen.query_one("#tokens-error", Static).has_class("-shown")
            await type_into(pilot, screen, "seq", "0")
            await type_into(pilot, screen, "steps", "x")
            await pilot.pause()
            assert text_of(screen, "#seq-error") == "Seq must be positive, got 0"
            assert text_of(screen, "#steps-error") == "Steps must be a whole number, got 'x'"
            await type_into(pilot, screen, "steps", "2")
            await type_into(pilot, screen, "seq", "4096")
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert text_of(screen, "#seq-error") == (
                "Seq 4096 exceeds the model's limit of 2048 positions"
            )
            assert not app.training_asked

    asyncio.run(scenario())


# ---- without Textual --------------------------------------------------------------------
def test_read_train_builds_the_spec_from_the_resolved_run() -> None:
    run = resolved(RunSpec(model="opt-125m", device="cpu"), CPU_ONLY)
    base = TrainSpec(grad_accum=4)
    result = read_train(TrainValues("full", "128", "3", "adamw-8bit"), run, base)
    assert result.errors == {}
    assert result.spec == replace(base, base=run.spec, seq=128, steps=3, optim="adamw-8bit")
    # the run's own fields wrong: nothing to train, the recipe's numbers still checked
    assert read_train(TrainValues("full", "-1", "3", "adamw"), None, base).errors == {
        "seq": "Seq must be positive, got -1"
    }


def test_qlora_without_bitsandbytes_is_refused_under_method(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quant, "installed", lambda package: False)
    run = resolved(RunSpec(model="opt-125m", device="cpu"), CPU_ONLY)
    result = read_train(TrainValues("qlora", "128", "3", "adamw"), run, TrainSpec())
    assert result.spec is None
    assert result.errors == {"method": 'Quant nf4 needs bitsandbytes: pip install -e ".[quant]"'}


def test_at_80x24_the_form_scrolls_to_the_field_in_focus(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, StartScreen)
            await pilot.pause()
            fields, run = screen.query_one("#fields"), screen.query_one("#run", Button)
            assert not fields.region.contains_region(run.region)  # below the fold
            run.focus()
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()  # the scroll to the focused field
            await pilot.pause()
            assert fields.region.contains_region(run.region)

    asyncio.run(scenario())
