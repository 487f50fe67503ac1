"""`vramtui profile` of a training program: its optimizer steps on the step axis, phase
by phase, as `vramtui train` records its own."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import back_from_summary
from textual.widgets import Static
from torch import nn
from torch.nn.modules import module as nn_module

from vramtui.measure import events as ev
from vramtui.measure.recorder import Recorder
from vramtui.measure.script.hooks import Instrument
from vramtui.measure.script.program_process import Program
from vramtui.measure.session_view import SessionView
from vramtui.runspec import RunSpec
from vramtui.runspec.program_spec import ProgramSpec
from vramtui.runspec.train_spec import TRAIN_PHASES, TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic_train import synthetic_training
from vramtui.tui.plotdata import build_plot_data
from vramtui.tui.profile_app import ProfileApp, ProgramRunScreen
from vramtui.tui.screens.train_run_screen import train_status
from vramtui.tui.train_view import step_windows, steps_axis_end

ROOT = Path(__file__).parent.parent
LOOP = ["--steps", "3", "--batch", "2", "--seq", "16", "--width", "32", "--layers", "2"]
TRAINER = ["--steps", "2", "--batch", "2", "--seq", "16", "--hidden", "64", "--layers", "2"]


def profiled(folder: Path, script: str, *argv: str) -> dict[str, Any]:
    """`vramtui profile` of an example, in a fresh process: its exit, JSON and CSV rows."""
    run = subprocess.run(
        [sys.executable, "-m", "vramtui", "profile", "--out", str(folder)]
        + ["--csv", str(folder / "s.csv"), "--json", str(folder / "s.json")]
        + [str(ROOT / "examples" / script), *argv, "--vocab", "128"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    with open(folder / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((folder / "s.json").read_text())
    return {"code": run.returncode, "err": run.stderr, "summary": summary, "rows": rows}


def phases_in_order(rows: list[dict[str, str]]) -> list[str]:
    """The phases the samples were marked with, in time order, each run of one once."""
    return [phase for phase, _ in groupby(r["phase"] for r in rows if r["phase"])]


@pytest.mark.engine
@pytest.mark.slow
def test_a_plain_pytorch_loop_has_three_steps_phases_in_order_and_phase_peaks(
    tmp_path: Path,
) -> None:
    got = profiled(tmp_path, "train_loop.py", *LOOP)
    assert got["code"] == 0, got["err"]
    training = got["summary"]["training"]
    steps = training["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert training["steps_done"] == 3
    assert training["optimizer"] == "torch.AdamW"
    for s in steps:
        assert set(s["phase_peaks"]) == set(TRAIN_PHASES)
        assert all(v > 0 for v in s["phase_peaks"].values())
        assert s["tokens"] == 2 * 16
    inside = [p for p in phases_in_order(got["rows"]) if p in TRAIN_PHASES]
    assert inside == list(TRAIN_PHASES) * 3
    loaded = training["loaded"]
    first = steps[0]
    assert first["gradient_bytes"] == loaded["trainable_bytes"] > 0  # fp32 grads, AdamW
    assert first["optimizer_state_bytes"] >= 2 * loaded["trainable_bytes"]  # two moments
    assert first["activation_bytes"] > 0
    assert steps[1]["gradient_bytes"] is None  # counted in step 1 only
    assert training["peak"]["phase"] in TRAIN_PHASES


@pytest.mark.engine
@pytest.mark.slow
def test_an_hf_trainer_script_runs_unchanged_and_its_two_steps_are_recorded(
    tmp_path: Path,
) -> None:
    got = profiled(tmp_path, "hf_trainer.py", *TRAINER)
    assert got["code"] == 0, got["err"]
    summary = got["summary"]
    assert summary["status"] == "completed"
    training = summary["training"]
    assert [s["step"] for s in training["steps"]] == [1, 2]
    assert training["optimizer"] == "torch.AdamW"
    assert all(set(s["phase_peaks"]) == set(TRAIN_PHASES) for s in training["steps"])
    assert training["steps"][0]["tokens"] == 2 * 16


class Events:
    """An Instrument's events, decoded as they are written."""

    def __init__(self) -> None:
        self.items: list[ev.Event] = []

    def write(self, text: str) -> None:
        self.items += [ev.decode(line) for line in text.splitlines() if line]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.items if isinstance(e, kind)]


@pytest.fixture
def instrument() -> Any:
    events = Events()
    it = Instrument(events.write)
    it.ensure_hello(torch.device("cpu"))
    it.training.install()
    yield it, events
    it.training.uninstall()


def test_a_program_that_makes_no_optimizer_gets_no_module_hooks(instrument: Any) -> None:
    it, events = instrument
    before = dict(nn_module._global_forward_pre_hooks)
    model = nn.Linear(4, 4)
    model(torch.ones(2, 4)).sum().backward()
    assert dict(nn_module._global_forward_pre_hooks) == before
    assert not events.of(ev.TrainStep) and not events.of(ev.TrainLoaded)
    torch.optim.SGD(model.parameters(), lr=0.1)
    assert len(nn_module._global_forward_pre_hooks) == len(before) + 1


def test_uninstall_puts_torch_back() -> None:
    original = torch.optim.Optimizer.__init__
    it = Instrument(Events().write)
    it.training.install()
    assert torch.optim.Optimizer.__init__ is not original
    torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    it.training.uninstall()
    assert torch.optim.Optimizer.__init__ is original
    assert not nn_module._global_forward_pre_hooks


def test_gradient_accumulation_is_one_step_with_a_forward_per_micro_batch(
    instrument: Any,
) -> None:
    it, events = instrument
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    optimizer = torch.optim.AdamW(model.parameters())
    for _ in range(2):  # two steps of two micro-batches each
        for _ in range(2):
            model(torch.ones(3, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    it.training.finish()
    steps = events.of(ev.TrainStep)
    assert [s.step for s in steps] == [1, 2]
    assert [s.tokens for s in steps] == [6, 6]  # two forwards of 3 rows
    phases = [e.name for e in events.of(ev.Phase)]
    one = ["forward", "backward", "forward", "backward", "optimizer", "zero_grad"]
    assert phases == one * 2
    assert len(events.of(ev.TrainLoaded)) == 1


def test_an_evaluation_forward_is_not_a_step(instrument: Any) -> None:
    it, events = instrument
    model = nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        model(torch.ones(2, 4))
    it.training.finish()
    assert [s.step for s in events.of(ev.TrainStep)] == [1]
    assert [e.name for e in events.of(ev.Phase)] == list(TRAIN_PHASES)


def test_recomputation_in_backward_is_not_a_new_forward(instrument: Any) -> None:
    """Checkpointed blocks run their forward again inside backward, called by autograd
    (at depth 0): they are inside the root, so they start no forward phase."""
    it, events = instrument
    block = nn.Sequential(nn.Linear(4, 4), nn.Tanh())

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = block

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=False)

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.ones(2, 4, requires_grad=True)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    it.training.finish()
    assert [s.step for s in events.of(ev.TrainStep)] == [1, 2]
    assert [e.name for e in events.of(ev.Phase)] == list(TRAIN_PHASES) * 2


def test_an_out_of_memory_in_backward_is_saved_with_its_phase_and_step(
    instrument: Any,
) -> None:
    from vramtui.measure.script.program_main import record_failure

    it, events = instrument
    model = nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    raised: BaseException | None = None
    try:
        for step in (1, 2):
            loss = model(torch.ones(2, 4)).sum()
            if step == 2:  # the program's backward runs out of memory in step 2
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    except torch.OutOfMemoryError as exc:
        raised = exc
    assert raised is not None
    record_failure(it, raised)
    failed = events.of(ev.Failed)
    assert [(f.kind, f.phase, f.token) for f in failed] == [("oom", "backward", 2)]
    assert [s.step for s in events.of(ev.TrainStep)] == [1]  # the step done is kept


def test_a_tracked_block_that_trains_has_its_steps(tmp_path: Path) -> None:
    import vramtui

    model = nn.Linear(4, 4)
    with vramtui.track(json=tmp_path / "t.json", csv=tmp_path / "t.csv"):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            model(torch.ones(2, 4)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    training = json.loads((tmp_path / "t.json").read_text())["training"]
    assert [s["step"] for s in training["steps"]] == [1, 2]
    assert torch.optim.Optimizer.__init__.__module__ == "torch.optim.optimizer"  # put back


# ---- the app's step axis ------------------------------------------------------------
def program_view(cut_at_phase: str | None) -> SessionView:
    """A training stream replayed as a profiled program's session (optionally cut at the
    start of `cut_at_phase` in step 2: the program still running)."""
    items = synthetic_training(TrainSpec(base=RunSpec(model="tiny"), steps=3))
    if cut_at_phase is not None:
        forwards = 0
        for n, item in enumerate(items):
            if isinstance(item, ev.Phase) and item.name == "forward":
                forwards += 1
            if forwards == 2 and isinstance(item, ev.Phase) and item.name == cut_at_phase:
                items = items[: n + 2]
                break
    spec = ProgramSpec(model="train.py", program="train.py")
    return ReplayRecorder(spec, items).session.snapshot()


def test_a_training_programs_step_in_progress_is_on_the_step_axis() -> None:
    view = program_view("backward")
    windows = step_windows(view)
    assert [(w.step, w.told) for w in windows] == [(1, True), (2, False)]
    assert steps_axis_end(view) == 2.0
    status = train_status(view, None)
    assert "step 2 │" in status and "step 2/" not in status  # no count was asked for


def test_a_finished_training_programs_status_counts_its_steps() -> None:
    view = program_view(None)
    assert [w.step for w in step_windows(view)] == [1, 2, 3]
    assert train_status(view, None).startswith("completed │ step 3 │")


@pytest.mark.engine
@pytest.mark.slow
def test_the_app_shows_a_training_program_on_the_step_axis(tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "train_loop.py")
    program = Program((script, *LOOP, "--vocab", "128"))
    made: list[Recorder] = []

    def make(on_output: Callable[[str], None]) -> Recorder:
        made.append(Recorder.for_program(program, capture=True, on_output=on_output))
        return made[0]

    app = ProfileApp(make, out_dir=tmp_path)

    async def scenario() -> tuple[str, str]:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, ProgramRunScreen)
            await back_from_summary(pilot, screen)
            return screen.axis, str(screen.query_one("#status", Static).render())

    axis, status = asyncio.run(scenario())
    assert axis == "steps"
    assert status.startswith("completed │ step 3 │")
    view = made[0].session.snapshot()
    marks = [label for _, label in build_plot_data(view, axis="steps").phase_marks]
    assert marks.count("fwd") == 3 and marks.count("opt") == 3


def test_a_checkpointed_hf_model_is_said_to_checkpoint(instrument: Any) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    it, events = instrument
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.activation_checkpointing_enable()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(0, 64, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    it.training.finish()
    assert [e.grad_checkpointing for e in events.of(ev.TrainLoaded)] == [True]
    assert [e.name for e in events.of(ev.Phase)] == list(TRAIN_PHASES)  # no recomputed forward


class Wrapped(torch.optim.Optimizer):
    """An optimizer around another (as accelerate's is): its step() calls the inner
    one's, and its states are the inner one's."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        super().__init__(inner.param_groups, {})
        self.inner = inner
        self.state = inner.state

    def step(self, closure: Any = None) -> Any:
        return self.inner.step(closure)


def test_an_optimizer_wrapped_in_another_is_one_step_and_its_states_count_once(
    instrument: Any,
) -> None:
    it, events = instrument
    model = nn.Linear(8, 8)
    optimizer = Wrapped(torch.optim.AdamW(model.parameters()))
    for _ in range(2):
        model(torch.ones(2, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    it.training.finish()
    steps = events.of(ev.TrainStep)
    assert [s.step for s in steps] == [1, 2]
    weights = events.of(ev.TrainLoaded)[0].trainable_bytes
    assert 2 * weights <= steps[0].optimizer_state_bytes < 3 * weights  # two moments, once
    assert [e.name for e in events.of(ev.Phase)] == list(TRAIN_PHASES) * 2


def test_a_forward_that_raises_in_step_1_stays_in_forward_and_leaves_no_hooks(
    instrument: Any,
) -> None:
    it, events = instrument

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("the program's own bug")

    model = Broken()
    torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError):
        model(torch.ones(1, 2))
    assert it.phase == "forward" and it.token == 1  # where a failure is said to be
    it.training.uninstall()
    assert not torch._C._autograd._top_saved_tensors_default_hooks(False)
