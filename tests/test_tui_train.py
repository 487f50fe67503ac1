"""A training run in the app: memory on a step axis (each sample inside its step, the
phases marked), the status line counting steps, the breakdown in training's terms, the
summary of a finished training run; `vramtui train --app`; a real tiny Llama on the CPU."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from helpers import CPU_ONLY, WITH_GPU, run_cli, wait_for
from textual.widgets import Static

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.session_view import SessionView
from vramtui.runspec import ResolvedRun, RunSpec
from vramtui.runspec.train_resolve import prepare_training
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import Item
from vramtui.testing.synthetic_train import MB, synthetic_training
from vramtui.tui.app import VramApp
from vramtui.tui.plotdata import build_plot_data
from vramtui.tui.screens.start_screen import StartScreen
from vramtui.tui.screens.summary_screen import SummaryScreen
from vramtui.tui.screens.train_run_screen import TrainRunScreen, train_status
from vramtui.tui.train_view import step_marks, step_series, step_windows, train_breakdown
from vramtui.tui.widgets.breakdown_panel import BreakdownPanel
from vramtui.tui.widgets.memory_plot import MemoryPlot

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"
GPU_RECIPE = TrainSpec(base=RunSpec(model="llama-3.2-1b", device="cuda:0"), steps=3)


def replayed(spec: TrainSpec, items: list[Item] | None = None) -> SessionView:
    items = synthetic_training(spec) if items is None else items
    return ReplayRecorder(spec, items).session.snapshot()


def cut_in_step(spec: TrainSpec, step: int, phase: str) -> list[Item]:
    """The stream up to (not past) `phase` of `step`'s first sample: a run in progress."""
    items = synthetic_training(spec)
    seen = 0
    for n, item in enumerate(items):
        if isinstance(item, ev.Phase) and item.name == "forward":
            seen += 1
        if seen == step and isinstance(item, ev.Phase) and item.name == phase:
            return items[: n + 3]  # the phase line, its first sample and NVML reading
    raise AssertionError(f"no {phase} in step {step}")


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def panel_text(screen: Any) -> str:
    """The breakdown panel as it reads on screen."""
    from rich.console import Console

    console = Console(width=34, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(screen.query_one(BreakdownPanel).content)
    return captured.get()


# ---- the step axis, without Textual ----------------------------------------------------
def test_each_sample_sits_inside_its_step_and_the_saw_tooth_shows() -> None:
    view = replayed(GPU_RECIPE)
    points = step_series(view, "allocated")
    for told in view.train_steps:
        inside = [(x, y) for x, y in points if told.step - 1 <= x < told.step]
        assert inside, f"no sample in step {told.step}"
        peak_x = max(inside, key=lambda p: p[1])[0]
        forward = [y for x, y in inside if x <= peak_x]
        assert forward == sorted(forward)  # activations pile up to the step's peak ...
        after = [y for x, y in inside if x > peak_x]
        assert after and after[-1] < max(y for _, y in inside)  # ... and are let go
    marks = step_marks(view)
    assert [label for _, label in marks] == ["fwd", "bwd", "opt", "zero"] * 3
    assert [x for x, label in marks if label == "fwd"] == [0.0, 1.0, 2.0]
    data = build_plot_data(view, axis="steps", buckets=200)
    assert data.axis == "steps" and data.x_max == 3.0 and data.phase_marks == marks
    assert all(0 <= x < 3 for line in data.lines for x in line.xs)


def test_samples_outside_the_steps_are_not_on_the_step_axis() -> None:
    items = synthetic_training(GPU_RECIPE)
    end = max(getattr(i, "t", 0.0) for i in items)
    done = next(n for n, i in enumerate(items) if isinstance(i, ev.Phase) and i.name == "done")
    after = ev.Sample(None, end + 0.5, "done", 10**9, 5 * 10**9, 10**9, None)
    view = replayed(GPU_RECIPE, [*items[: done + 1], after, *items[done + 1 :]])
    points = step_series(view, "allocated")
    assert points == step_series(replayed(GPU_RECIPE), "allocated")  # load and done left out
    assert len(points) == sum(1 for s in view.samples if s.phase not in ("load", "done"))


def test_the_step_in_progress_is_placed_against_the_last_step_told() -> None:
    view = replayed(GPU_RECIPE, cut_in_step(GPU_RECIPE, 2, "backward"))
    windows = step_windows(view)
    assert [w.step for w in windows] == [1, 2]
    first = view.train_steps[0]
    assert windows[1].length == pytest.approx(first.t_end - first.t_start)
    last_x = step_series(view, "allocated")[-1][0]
    assert 1.4 <= last_x < 1.5  # backward starts 0.4 of a step in
    status = train_status(view, now=view.samples[-1].t)
    assert status.startswith("backward │ step 2/3 │ ")
    assert "ETA 0:02" in status  # two steps left, a second each


def test_the_status_line_of_a_finished_run() -> None:
    view = replayed(GPU_RECIPE)
    rate = GPU_RECIPE.tokens_per_step  # steps 2 and 3 take one second each
    assert train_status(view, None) == (f"completed │ step 3/3 │ {rate:.1f} tok/s │ "
                                        "elapsed 0:05 │ ETA done")  # fmt: skip


def test_the_status_line_names_the_step_a_failure_stopped_in() -> None:
    items = cut_in_step(GPU_RECIPE, 2, "backward")
    items.append(ev.Failed("oom", "CUDA out of memory", "backward", 2, 2 * 10**9, 10**9))
    view = replayed(GPU_RECIPE, items)
    assert train_status(view, None).startswith("failed (oom) │ step 2/3 │ ")
    assert train_status(view, None).endswith("ETA –")
    before = replayed(GPU_RECIPE, cut_in_step(GPU_RECIPE, 1, "forward")[:3])  # still loading
    assert train_status(before, None).startswith("load │ step 0/3 │ – tok/s")


def test_the_breakdown_holds_the_training_parts_at_the_peak() -> None:
    view = replayed(GPU_RECIPE)
    shown = train_breakdown(view)
    assert shown.title == "at the peak: optimizer, step 1"
    rows = dict(shown.rows)
    assert rows["trainable weights"] == 1000 * MB
    assert rows["optimizer states"] == 2000 * MB and rows["gradients"] == 1000 * MB
    assert "activations saved" not in rows  # freed by backward's end
    assert "frozen weights" not in rows  # full fine-tuning: nothing frozen
    assert shown.total is not None and shown.total[0] == "NVML process"
    assert sum(rows.values()) == shown.total[1]  # the parts add up to what NVML saw


def test_before_any_step_the_breakdown_is_the_weights_as_loaded() -> None:
    view = replayed(GPU_RECIPE, cut_in_step(GPU_RECIPE, 1, "forward"))
    shown = train_breakdown(view)
    assert shown.title == "where the bytes are · loaded"
    assert dict(shown.rows)["trainable weights"] == 1000 * MB


# ---- the app, fed by a replay ------------------------------------------------------------
@dataclass(frozen=True)
class Predicted:
    """A training estimate as the screen reads one (TrainPrediction)."""

    peak_allocated_bytes: int
    peak_phase: str
    phase_peaks: dict[str, int]


def replay_app(
    tmp_path: Path,
    items: list[Item] | None = None,
    hold: bool = False,
    predictor: Any = None,
) -> VramApp:
    def trainer(run: ResolvedRun, spec: TrainSpec) -> ReplayRecorder:
        stream = synthetic_training(spec) if items is None else items
        return ReplayRecorder(spec, stream, hold=hold)

    def no_generation(run: ResolvedRun) -> ReplayRecorder:
        raise AssertionError("a training run starts no generation")

    return VramApp(
        GPU_RECIPE.base, out_dir=tmp_path, list_devices=lambda: WITH_GPU,
        make_recorder=no_generation, make_trainer=trainer, predictor=predictor,
    )  # fmt: skip


async def training_screen(app: VramApp, pilot: Any) -> TrainRunScreen:
    """The start form's fine-tuning run of GPU_RECIPE begun: its run screen, mounted."""
    await pilot.pause()
    app.start_training(GPU_RECIPE)
    screen = app.screen
    assert isinstance(screen, TrainRunScreen)
    await pilot.pause()
    return screen


def test_start_training_shows_the_run_on_a_step_axis_then_its_summary(tmp_path: Path) -> None:
    app = replay_app(tmp_path)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            app.start_training(GPU_RECIPE)
            run = app.current
            assert run is not None
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            await pilot.pause()  # its widgets mounted
            summary = app.screen
            assert "training, 3/3 steps" in text_of(summary, "#heading")
            training = text_of(summary, "#training")
            assert GPU_RECIPE.recipe() in training and "in optimizer of step 1" in training
            assert run.saved is not None
            saved = json.loads(run.saved.json.read_text())
            assert saved["training"]["steps_done"] == 3
            await pilot.press("g")  # back to the graph
            screen = app.screen
            assert isinstance(screen, TrainRunScreen)
            await wait_for(pilot, lambda: screen.query_one(MemoryPlot).data is not None)
            plot = screen.query_one(MemoryPlot)
            assert plot.data is not None and plot.data.axis == "steps"
            assert text_of(screen, "#status").startswith("completed │ step 3/3")
            facts = text_of(screen, "#side-facts").splitlines()
            assert facts[0] == "all 500.0M params train"
            assert facts[1] == "phase peaks (step)"
            assert facts[2:] == [
                "forward     3.96 GB  (2)",
                "backward    4.04 GB  (2)",
                "optimizer   4.06 GB  (1)",
                "zero_grad   3.00 GB  (1)",
            ]
            panel = panel_text(screen)
            assert "at the peak: optimizer, step 1" in panel and "optimizer states" in panel
            await pilot.press("x")  # the seconds axis, then back to steps
            await wait_for(pilot, lambda: plot.data is not None and plot.data.axis == "seconds")
            await pilot.press("x")
            await wait_for(pilot, lambda: plot.data is not None and plot.data.axis == "steps")
            await pilot.press("r")  # the start form: the model trained, a generation's budget
            start = app.screen
            assert isinstance(start, StartScreen)
            assert start.base.model == GPU_RECIPE.base.model
            assert (start.base.tokens, start.base.prompt_tokens) == (RunSpec().tokens, 8)

    asyncio.run(scenario())


def test_a_training_run_in_progress_counts_its_steps(tmp_path: Path) -> None:
    app = replay_app(tmp_path, cut_in_step(GPU_RECIPE, 2, "forward"), hold=True)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await training_screen(app, pilot)
            await wait_for(pilot, lambda: "step 2/3" in text_of(screen, "#status"))
            assert text_of(screen, "#status").startswith("forward │ step 2/3")
            await pilot.press("c")  # cancelled: the partial session is kept
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            run = app.current
            assert run is not None and run.saved is not None
            saved = json.loads(run.saved.json.read_text())
            assert saved["status"] == "cancelled" and saved["training"]["steps_done"] == 1

    asyncio.run(scenario())


def test_the_training_estimate_is_drawn_beside_the_measurement(tmp_path: Path) -> None:
    asked: list[tuple[ResolvedRun, TrainSpec]] = []

    def predictor(run: ResolvedRun, spec: TrainSpec) -> Predicted:
        asked.append((run, spec))
        return Predicted(3500 * MB, "backward", {"backward": 3500 * MB})

    app = replay_app(tmp_path, cut_in_step(GPU_RECIPE, 2, "forward"), True, predictor)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await training_screen(app, pilot)
            await wait_for(pilot, lambda: screen.prediction is not None)
            plot = screen.query_one(MemoryPlot)
            await wait_for(pilot, lambda: plot.data is not None and plot.data.predicted)
            line = plot.data.predicted if plot.data else None
            assert line is not None and line.xs == [0, 3]
            assert [y * plot.data.scale for y in line.ys] == [3500 * MB, 3500 * MB]  # type: ignore[union-attr]
            assert "predicted 3.50 GB in backward" in text_of(screen, "#side-facts")
            await pilot.press("x")  # the seconds axis has no predicted line
            await wait_for(pilot, lambda: plot.data is not None and plot.data.axis == "seconds")
            assert plot.data.predicted is None
            await pilot.press("c")

    asyncio.run(scenario())
    ((run, spec),) = asked
    assert spec.base == run.spec and spec.steps == GPU_RECIPE.steps  # the run as resolved


def test_a_model_the_estimate_cannot_trace_is_said(tmp_path: Path) -> None:
    def predictor(run: ResolvedRun, spec: TrainSpec) -> Predicted:
        raise UsageError("this model's code cannot run on the meta device")

    app = replay_app(tmp_path, predictor=predictor)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            app.start_training(GPU_RECIPE)
            said = lambda: [n.message for n in app._notifications]  # noqa: E731
            await wait_for(pilot, lambda: any("no training estimate" in m for m in said()))
            assert any("meta device" in m for m in said())

    asyncio.run(scenario())


def test_a_training_run_refused_after_it_loaded_is_kept(tmp_path: Path) -> None:
    """A usage failure once the model is loaded for training has measured something: the
    session is saved and summarised, not sent back to the form as a refused run."""
    items = cut_in_step(GPU_RECIPE, 1, "forward")
    items.append(ev.Failed("usage", "the recipe cannot train this model", "forward", 1))
    app = replay_app(tmp_path, items)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            app.start_training(GPU_RECIPE)
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            run = app.current
            assert run is not None and run.saved is not None
            assert json.loads(run.saved.json.read_text())["status"] == "failed"

    asyncio.run(scenario())


def test_a_recipe_that_cannot_run_is_said_and_nothing_starts(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    paged_on_cpu = replace(GPU_RECIPE, base=replace(GPU_RECIPE.base, device="cpu"),
                           optim="paged-adamw-8bit")  # fmt: skip

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            app.start_training(paged_on_cpu)
            await pilot.pause()
            assert app.current is None and app.runs_started == 0
            said = [n.message for n in app._notifications]
            assert any("paged-adamw-8bit" in m and "cpu" in m for m in said)

    asyncio.run(scenario())


# ---- vramtui train --app -----------------------------------------------------------------
def test_train_app_opens_the_app_on_the_recipe(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened: list[VramApp] = []

    def run_app(app: VramApp) -> int:
        opened.append(app)
        return 0

    monkeypatch.setattr("vramtui.commands.app_command.run_app", run_app)
    code, _, err = run_cli(
        capsys, "train", "--config", str(TINY_LLAMA), "--device", "cpu", "--seq", "16",
        "--steps", "2", "--method", "full", "--app", "--out", str(tmp_path / "kept"),
    )  # fmt: skip
    assert code == 0, err
    (app,) = opened
    assert app.train_at_start is not None and app.out_dir == tmp_path / "kept"
    run, spec = app.train_at_start
    assert (spec.seq, spec.steps, spec.method) == (16, 2, "full")
    assert run.backend == "cpu" and spec.base.dtype == "float32"  # as `vramtui train` runs it


def test_train_app_takes_no_headless_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "train", "--config", str(TINY_LLAMA), "--device", "cpu", "--app",
        "--json", "x.json",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--json" in err


# ---- a real training run on the CPU --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.engine
def test_a_tiny_llama_trains_in_the_app_on_the_cpu(tmp_path: Path) -> None:
    base = RunSpec(model="tiny-llama", source="config", path=str(TINY_LLAMA), device="cpu",
                   batch=2)  # fmt: skip
    recipe = TrainSpec(base=base, seq=16, steps=2)
    run, spec = prepare_training(recipe, CPU_ONLY)
    app = VramApp(base, out_dir=tmp_path, list_devices=lambda: CPU_ONLY, train=(run, spec))

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            active = app.current
            assert active is not None
            assert any(isinstance(s, TrainRunScreen) for s in app.screen_stack)
            await wait_for(pilot, lambda: active.ended)
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            await pilot.pause()  # its widgets mounted
            summary = app.screen
            assert "training, 2/2 steps" in text_of(summary, "#heading")
            assert "forward" in text_of(summary, "#training")
            assert "no GPU" in text_of(summary, "#notes")
            await pilot.press("g")
            screen = app.screen
            assert isinstance(screen, TrainRunScreen)
            plot = screen.query_one(MemoryPlot)
            await wait_for(pilot, lambda: plot.data is not None and not plot.data.empty)
            data = plot.data
            assert data is not None and data.axis == "steps" and data.x_max == 2.0
            assert {label for _, label in data.phase_marks} >= {"fwd", "bwd"}
            assert all(0 <= x < 2 for line in data.lines for x in line.xs)
            assert text_of(screen, "#status").startswith("completed │ step 2/2")
            assert "no GPU" in text_of(screen, "#note")
            panel = panel_text(screen)
            assert "at the peak:" in panel and "trainable weights" in panel

    asyncio.run(scenario())
    assert active_saved(app)["training"]["steps_done"] == 2


def active_saved(app: VramApp) -> dict[str, Any]:
    assert app.current is not None and app.current.saved is not None
    saved: dict[str, Any] = json.loads(app.current.saved.json.read_text())
    return saved


@pytest.mark.slow
@pytest.mark.engine
def test_the_start_forms_training_run_takes_the_spare_engine(tmp_path: Path) -> None:
    """start_training (the start form's fine-tune workload) on the spare engine the app
    keeps ready: the spare, handed a training recipe, trains."""
    base = RunSpec(model="tiny-llama", source="config", path=str(TINY_LLAMA), device="cpu",
                   batch=2)  # fmt: skip
    app = VramApp(base, out_dir=tmp_path, list_devices=lambda: CPU_ONLY)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            assert app.spares is not None
            pool = app.spares.pool
            await wait_for(pilot, lambda: pool.spares)  # the spare the app keeps ready
            (spare,) = pool.spares
            app.start_training(TrainSpec(base=base, seq=16, steps=2))
            active = app.current
            assert active is not None and active.train is not None
            await wait_for(pilot, lambda: active.ended)
            await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
            await pilot.pause()
            assert "training, 2/2 steps" in text_of(app.screen, "#heading")
            hello = active.session.snapshot().hello
            assert spare.proc is not None and hello is not None and hello.pid == spare.proc.pid

    asyncio.run(scenario())
