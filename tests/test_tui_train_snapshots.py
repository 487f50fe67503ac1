"""Snapshots of a training run's screens, fed by the synthetic training stream with the
clocks, devices and save folder fixed. Update with `pytest --snapshot-update`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from helpers import SNAPSHOT_DEVICES, before

from vramtui.runspec import ResolvedRun, RunSpec
from vramtui.runspec.train_resolve import prepare_training
from vramtui.runspec.train_spec import TrainSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import Item
from vramtui.testing.synthetic_train import synthetic_training
from vramtui.tui.app import VramApp

RECIPE = TrainSpec(base=RunSpec(model="llama-3.2-1b", device="cuda:0"), steps=3)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the app saves into ./sessions, shown as such


def upto_step(items: list[Item], step: int) -> list[Item]:
    """The stream as far as step `step`'s backward phase has gone (half of its samples)."""
    n = next(
        i for i, item in enumerate(items)
        if getattr(item, "name", None) == "backward" and getattr(item, "t", 0) > step - 1 + 1.9
    )  # fmt: skip
    return items[: n + 10]


def training_app(items: list[Item]) -> VramApp:
    last_t = max(getattr(i, "t", 0.0) for i in items)

    def trainer(run: ResolvedRun, spec: TrainSpec) -> ReplayRecorder:
        return ReplayRecorder(spec, items, hold=True)

    return VramApp(
        RECIPE.base,
        out_dir=Path("sessions"),
        make_recorder=lambda run: ReplayRecorder(run, [], hold=True),
        make_trainer=trainer,
        list_devices=lambda: SNAPSHOT_DEVICES,
        clock=lambda: last_t,
        wall_clock=lambda: datetime(2026, 1, 2, 3, 4, 5),
        train=prepare_training(RECIPE, SNAPSHOT_DEVICES),
    )


def test_training_run_screen_mid_step(snap_compare: Callable[..., bool]) -> None:
    app = training_app(upto_step(synthetic_training(RECIPE), 2))
    assert snap_compare(app, terminal_size=(110, 32), run_before=before())
