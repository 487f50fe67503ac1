"""What several test files share: the test devices, the tiny model, a real run, the CLI
in this process, the app fed by a replay, waiting on a condition, a profiled program's
run seen to its end, the KV replay's arguments for a catalogue cell, a benchmark script
imported as a module. Fixtures live in
conftest.py; no test imports conftest or another test file."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from textual.pilot import Pilot

from vramtui.cli import main
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import SessionView
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict import peaks, planner
from vramtui.predict.estimator import Architecture, estimate
from vramtui.predict.kv_replay import CacheReserve
from vramtui.predict.planner import GeneratePlanner, Setting
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun, RunSpec, resolve
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import Item
from vramtui.tui.app import VramApp
from vramtui.tui.screens.run_screen import RunScreen
from vramtui.tui.screens.summary_screen import SummaryScreen

TINY_CONFIG = Path(__file__).parent / "fixtures" / "tiny-opt.json"
# A tiny Llama (grouped queries, untied head) for training traces, as a config dict.
TINY_LLAMA: dict[str, object] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 384,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}
# The devices tests run against: a CPU with 24 GB, 20 GB of it available.
CPU_ONLY = DeviceList((DeviceChoice("cpu", "Test CPU", 24 * 10**9, 20 * 10**9),))
H100 = DeviceChoice("cuda:0", "NVIDIA H100 80GB HBM3", 85_520_809_984, 84_000_000_000)
WITH_GPU = DeviceList((H100, *CPU_ONLY.choices))

# The published OPT architectures: parameters, and KV cache bytes per token in fp16.
PUBLISHED_OPT = {
    "opt-125m": (125_239_296, 36_864),
    "opt-350m": (331_196_416, 98_304),
    "opt-1.3b": (1_315_758_080, 196_608),
    "opt-2.7b": (2_651_596_800, 327_680),
    "opt-6.7b": (6_658_473_984, 524_288),
    "opt-13b": (12_853_473_280, 819_200),
    "opt-30b": (29_974_540_288, 1_376_256),
    "opt-66b": (65_719_701_504, 2_359_296),
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`vramtui ARGS` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_spec(**overrides: object) -> RunSpec:
    values: dict[str, object] = dict(
        model="tiny-opt", source="config", path=str(TINY_CONFIG), tokens=12, device="cpu"
    )
    values.update(overrides)
    return RunSpec(**values)  # type: ignore[arg-type]


def resolved(spec: RunSpec, devices: DeviceList = CPU_ONLY) -> ResolvedRun:
    return resolve(spec, devices)


def record(spec: RunSpec, **options: object) -> SessionView:
    """One real run of `spec` on the test devices: the finished session."""
    return Recorder.for_run(resolved(spec), **options).run().snapshot()  # type: ignore[arg-type]


async def wait_for(pilot: Pilot, condition: Callable[[], object], timeout: float = 90.0) -> None:
    """Until `condition()` holds; `timeout` only ends a test that would hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.05)


async def back_from_summary(pilot: Pilot, screen: Any) -> Any:
    """Until the app's current run has ended and its summary is up, then back to the
    run's `screen` (as g does), redrawn; the run."""
    app: Any = pilot.app
    run = app.current
    assert run is not None
    await wait_for(pilot, lambda: run.ended)
    await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))
    app.pop_screen()
    await pilot.pause()
    screen.redraw()
    await pilot.pause()
    return run


# The app fed by a replay of a synthetic stream, with everything that could change
# between runs fixed: the device list, the clocks, the save folder (relative).
SNAPSHOT_H100 = DeviceChoice("cuda:0", "NVIDIA H100 80GB HBM3", 85_520_809_984, 84_300_000_000)
SNAPSHOT_DEVICES = DeviceList(
    (SNAPSHOT_H100, DeviceChoice("cpu", "CPU", 25_276_510_208, 21_000_000_000))
)


def make_app(
    spec: RunSpec,
    items: list[Item] | None,
    *,
    start: bool = True,
    devices: DeviceList = SNAPSHOT_DEVICES,
) -> VramApp:
    last_t = max((getattr(i, "t", 0.0) for i in items or []), default=1.0)
    return VramApp(
        spec,
        start=start,
        out_dir=Path("sessions"),
        make_recorder=lambda s: ReplayRecorder(s, items or [], hold=True),
        list_devices=lambda: devices,
        clock=lambda: last_t,
        wall_clock=lambda: datetime(2026, 1, 2, 3, 4, 5),
    )


async def settle(pilot: Pilot, *, finished: bool = False) -> None:
    """Wait for the device list, the prediction it starts (and the run, when it ends),
    then redraw once more."""
    app = pilot.app
    for groups in (("devices",), ("predict",), ("predict",)):  # a form changed meanwhile
        for worker in list(app.workers):
            if worker.group in groups or (finished and worker.group == "engine"):
                await worker.wait()
        await pilot.pause()
    if isinstance(app.screen, RunScreen):
        app.screen._plot_key = None
        app.screen.redraw()
    await pilot.pause()


def before(*keys: str, finished: bool = False) -> Callable[[Pilot], Awaitable[None]]:
    """A snapshot's run_before: settle, then each key pressed and settled."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, finished=finished)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, finished=finished)

    return run_before


def opt13(tokens: int = 2000) -> RunSpec:
    return RunSpec(model="opt-1.3b", tokens=tokens, device="cuda:0")


ReplayArgs = tuple[object, ...]


def catalogue_architecture(name: str, batch: int) -> Architecture:
    """A catalogue model's architecture as `vramtui fit`'s planner builds it."""
    entry = CATALOGUE[name]
    positions = GeneratePlanner().positions(entry)
    return planner._architecture(entry, Setting(batch=batch), positions)[0]


def replay_args(
    name: str, quant: str, batch: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[ReplayArgs, dict[str, object]]:
    """`kv_cache_replay`'s arguments as the estimate of the cell makes them."""
    seen: list[tuple[ReplayArgs, dict[str, object]]] = []

    def record(*args: object, **kwargs: object) -> CacheReserve:
        seen.append((args, kwargs))
        return CacheReserve(0, 0)

    monkeypatch.setattr(peaks, "kv_cache_replay", record)
    arch = catalogue_architecture(name, batch)
    estimate(arch, prompt_tokens=8, tokens=100, batch=batch, replay_cache=True, quant=quant)
    monkeypatch.undo()
    return seen[0]


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def benchmark_script(name: str) -> ModuleType:
    """benchmarks/NAME.py imported as a module: registered in sys.modules (its
    dataclasses look their module up there), benchmarks/ on sys.path (its `_common`)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
