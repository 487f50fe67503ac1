"""Quantized runs in the app: the start screen's Quant, double quant and KV cache bits,
driven by keys; a method that cannot run here refused in place; the quantization said
in the run's title and the RAM question; a quantized CPU run still says it is on the CPU.

Runs are replays of a synthetic stream: no engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import CPU_ONLY, WITH_GPU, wait_for
from textual.pilot import Pilot
from textual.widgets import Checkbox, Select, Static

from vramtui.measure.session import SessionView
from vramtui.predict.fit_forecast import FitCheck
from vramtui.runspec import DeviceList, RunSpec, quant
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.app import VramApp
from vramtui.tui.form import FormValues, model_facts, read_form
from vramtui.tui.screen_text import run_name, run_title
from vramtui.tui.screens.confirm_run_screen import confirm_text
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.start_fields import CACHE_BITS_OPTIONS, CACHE_OPTIONS, QUANT_OPTIONS
from vramtui.tui.screens.start_screen import StartScreen


def app_for(
    spec: RunSpec, out: Path, devices: DeviceList = CPU_ONLY, start: bool = False
) -> VramApp:
    items = synthetic_run("opt-125m", spec.tokens, upto=spec.tokens // 2, backend="cpu")
    return VramApp(
        spec,
        start=start,
        out_dir=out,
        make_recorder=lambda s: ReplayRecorder(s, items, hold=True),
        list_devices=lambda: devices,
    )


def text_of(screen: object, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())  # type: ignore[attr-defined]


OPTIONS = {"quant": QUANT_OPTIONS, "cache": CACHE_OPTIONS, "cache_bits": CACHE_BITS_OPTIONS}


async def choose(pilot: Pilot, screen: StartScreen, field: str, value: str) -> None:
    """Open the select and move to `value` by keys, as a user would."""
    select = screen.query_one(f"#{field}", Select)
    values = [v for _, v in OPTIONS[field]]
    steps = values.index(value) - values.index(select.value)
    select.focus()
    await pilot.press("enter", *(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
    await pilot.pause()
    assert select.value == value


def start_screen(app: VramApp) -> StartScreen:
    screen = app.screen
    assert isinstance(screen, StartScreen)
    return screen


def test_choosing_nf4_with_double_quant_and_a_2_bit_cache_builds_the_spec(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", tokens=20, device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = start_screen(app)
            await pilot.pause()
            double = screen.query_one("#double_quant", Checkbox)
            bits = screen.query_one("#cache_bits", Select)
            assert not double.display and not bits.display  # none, dynamic: nothing beside
            await choose(pilot, screen, "quant", "nf4")
            assert double.display and not double.value
            double.focus()
            await pilot.press("space")
            await choose(pilot, screen, "cache", "quantized")
            assert bits.display and bits.value == "4"
            await choose(pilot, screen, "cache_bits", "2")
            spec = screen.read_spec()
            assert (spec.quant, spec.double_quant, spec.cache, spec.cache_bits) == (
                "nf4",
                True,
                "quantized",
                2,
            )
            assert "before nf4" in text_of(screen, "#model-info")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.current is not None)
            assert app.current is not None
            assert app.current.spec.quant == "nf4" and app.current.spec.double_quant
            assert app.current.spec.cache_bits == 2

    asyncio.run(scenario())


def test_double_quant_goes_with_a_method_that_has_none(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", device="cpu", quant="nf4", double_quant=True), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = start_screen(app)
            await pilot.pause()
            assert screen.read_spec().double_quant
            await choose(pilot, screen, "quant", "int8")
            assert not screen.query_one("#double_quant", Checkbox).display
            spec = screen.read_spec()  # not refused: the hidden switch is not read
            assert spec.quant == "int8" and not spec.double_quant
            assert not screen.query_one("#quant-error", Static).has_class("-shown")

    asyncio.run(scenario())


def test_a_method_whose_library_is_missing_is_refused_under_quant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quant, "installed", lambda package: package != "bitsandbytes")
    app = app_for(RunSpec(model="opt-125m", tokens=20, device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = start_screen(app)
            await pilot.pause()
            await choose(pilot, screen, "quant", "nf4")
            error = screen.query_one("#quant-error", Static)
            assert error.has_class("-shown")
            assert text_of(screen, "#quant-error") == (
                'Quant nf4 needs bitsandbytes: pip install -e ".[quant]"'
            )
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert app.current is None and app.runs_started == 0  # nothing started
            assert isinstance(app.screen, StartScreen)
            assert app.focused is screen.query_one("#quant", Select)
            await choose(pilot, screen, "quant", "int8-wo")  # torchao: there
            assert not error.has_class("-shown")

    asyncio.run(scenario())


def test_a_method_for_cuda_only_is_refused_on_the_cpu_and_taken_on_a_gpu(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", tokens=20, device="cpu"), tmp_path, WITH_GPU)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = start_screen(app)
            await wait_for(pilot, lambda: screen.found.find("cuda:0") is not None)
            await choose(pilot, screen, "quant", "int4-wo")
            message = text_of(screen, "#quant-error")
            assert message.startswith("Quant int4-wo runs on CUDA GPUs only")
            assert message.endswith("this run is on cpu")
            screen.query_one("#device", Select).value = "cuda:0"
            await pilot.pause()
            assert not screen.query_one("#quant-error", Static).has_class("-shown")
            assert screen.read_spec().quant == "int4-wo"

    asyncio.run(scenario())


def test_a_quantized_cpu_run_says_its_quantization_and_that_there_is_no_gpu(
    tmp_path: Path,
) -> None:
    spec = RunSpec(model="opt-125m", tokens=100, device="cpu", quant="nf4", double_quant=True)
    app = app_for(spec, tmp_path, start=True)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, RunScreen) and "no GPU" in text_of(app.screen, "#note")
                ),
            )
            assert "opt-125m · float32 · nf4+dq · sdpa" in app.screen.sub_title
            assert text_of(app.screen, "#note").startswith("CPU — figures are process RSS")

    asyncio.run(scenario())


def test_the_script_source_leaves_quantization_to_the_program(tmp_path: Path) -> None:
    app = app_for(RunSpec(model="opt-125m", device="cpu"), tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = start_screen(app)
            screen.query_one("#source", Select).value = "script"
            await pilot.pause()
            for field in ("#quant", "#double_quant", "#cache_bits"):
                assert screen.query_one(field).disabled

    asyncio.run(scenario())


# ---- the words, without Textual ----------------------------------------------------------
def values(**changes: object) -> FormValues:
    fields: dict[str, object] = dict(
        model="opt-125m", source="architecture", path="", tokens="20", prompt_tokens="8",
        batch="1", dtype="auto", attn="sdpa", device="cpu",
    )  # fmt: skip
    fields.update(changes)
    return FormValues(**fields)  # type: ignore[arg-type]


def test_the_form_reads_the_quantization_and_finds_other_errors_past_it() -> None:
    result = read_form(values(quant="nf4", double_quant=True), RunSpec(), CPU_ONLY)
    assert result.run is not None and result.run.spec.quant == "nf4"
    assert result.run.spec.double_quant and result.run.spec.cache_bits == 4
    # a refused method and a bad number: both named, each under its own field
    result = read_form(values(quant="fp8", batch="0"), RunSpec(), CPU_ONLY)
    assert result.run is None
    assert result.errors["quant"].startswith("Quant fp8 runs on CUDA GPUs only")
    assert result.errors["batch"] == "Batch must be positive, got 0"
    # the bits are read for the quantized cache only
    result = read_form(values(cache="quantized", cache_bits="2"), RunSpec(), CPU_ONLY)
    assert result.run is not None and result.run.spec.cache_bits == 2
    result = read_form(values(cache="dynamic", cache_bits="2"), RunSpec(), CPU_ONLY)
    assert result.run is not None and result.run.spec.cache_bits == 4


def test_a_run_names_its_quantization() -> None:
    plain = RunSpec(model="opt-13b")
    assert run_name(plain) == "opt-13b"
    both = RunSpec(model="opt-13b", quant="nf4", double_quant=True, cache="quantized")
    assert run_name(both) == "opt-13b (nf4+dq, KV 4-bit)"
    check = FitCheck(fits=False, need_bytes=6 * 10**9, free_bytes=4 * 10**9)
    assert confirm_text(run_name(RunSpec(model="opt-13b", quant="int8")), check) == (
        "opt-13b (int8): predicted peak RSS 6.00 GB, RAM available 4.00 GB — run anyway?"
    )


def test_the_run_title_puts_the_quantization_after_the_dtype() -> None:
    items = synthetic_run("opt-125m", 5, backend="cpu")
    spec = RunSpec(model="opt-125m", tokens=5, device="cpu", quant="int8-wo", cache="quantized")
    session: SessionView = ReplayRecorder(spec, items).run().snapshot()
    assert run_title(session).startswith("opt-125m · float32 · int8-wo · KV 4-bit · sdpa · batch 1")


def test_the_model_facts_say_the_weights_before_quantization() -> None:
    from vramtui.models.catalogue import CATALOGUE

    entry = CATALOGUE["opt-1.3b"]
    assert "weights 2.63 GB · KV" in model_facts(entry, "float16")
    assert "weights 2.63 GB before nf4 · KV" in model_facts(entry, "float16", quant="nf4")
