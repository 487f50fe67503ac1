"""`vramtui compare` of training sessions: what sets the recipes apart, each phase's peak
and the training parts at each run's peak, side by side, read back from saved files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vramtui.cli import main
from vramtui.report.comparison_text import change
from vramtui.report.export import write_csv, write_json
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic_train import MB, Shape, synthetic_training
from vramtui.units import format_bytes

FULL = TrainSpec(base=RunSpec(model="llama-3.2-1b", device="cuda:0", dtype="bfloat16"), steps=2)


def saved(spec: TrainSpec, folder: Path, stem: str, shape: Shape | None = None) -> Path:
    session = ReplayRecorder(spec, synthetic_training(spec, shape)).session.snapshot()
    write_csv(session, folder / f"{stem}.csv")
    return write_json(session, folder / f"{stem}.json")


def row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(label))


def test_two_training_sessions_compare_phase_by_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    longer = replace(FULL, seq=2048, grad_checkpointing=True)
    a = saved(FULL, tmp_path, "a")
    b = saved(longer, tmp_path, "b", Shape(layer_activations=400 * MB))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "they differ in: seq, grad_checkpointing" in out
    assert "(2 training steps)" in out
    assert "Training: each phase's peak, and the parts at the run's peak" in out
    forward = [1000 * MB + 2000 * MB + 8 * layer * MB for layer in (120, 400)]  # step 2
    assert change(*forward) in row(out, "forward peak")
    # the parts at each run's peak moment: a peaks in step 1's optimizer step, when no
    # activation is held; b in step 2's backward, with every saved activation still held
    saved_acts = row(out, "activations saved for backward")
    assert saved_acts.split()[4:8] == ["0", "B", *format_bytes(8 * 400 * MB, 2).split()]
    assert row(out, "peak in").split()[2:] == ["optimizer,", "step", "1", "backward,", "step", "2"]
    assert "No breakdown" not in out and "Breakdown at each run's peak step" not in out


def test_the_compare_screen_overlays_training_sessions_on_the_step_axis(tmp_path: Path) -> None:
    import asyncio

    from textual.widgets import Static

    from vramtui.analysis.run_comparison import labelled
    from vramtui.report.saved import load_view
    from vramtui.tui.compare_app import CompareApp
    from vramtui.tui.compare_plot import build_compare_data
    from vramtui.tui.widgets.memory_plot import MemoryPlot

    paths = [saved(FULL, tmp_path, "a"), saved(replace(FULL, seq=2048), tmp_path, "b")]
    items = labelled([load_view(p) for p in paths], paths)
    data = build_compare_data(items, "allocated", [True, True])
    assert data.axis == "steps" and data.x_max == 2.0 and len(data.lines) == 2
    assert all(0 <= x < 2 for line in data.lines for x in line.xs)
    top = max(max(line.ys) for line in data.lines)
    assert top * data.scale == pytest.approx(4060 * MB)  # step 1 optimizer
    app = CompareApp(items)

    async def scenario() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            screen = app.screen
            plot = screen.query_one("#compare-plot", MemoryPlot)
            assert plot.data is not None and plot.data.axis == "steps"
            status = str(screen.query_one("#compare-status", Static).render())
            assert "against the step" in status
            legend = str(screen.query_one("#compare-legend", Static).render())
            assert "no line" not in legend and "peak 4.06 GB" in legend

    asyncio.run(scenario())
