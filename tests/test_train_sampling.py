"""What sampling a training step costs it, checked by structure (not by timing): a
per-layer sample never synchronises the device, the parts are counted in step 1 only
(no saved-tensor hook in the steps after it), and the samples inside a phase go out in
one write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vramtui.measure import events as ev
from vramtui.measure.engine import train_parts, train_run
from vramtui.measure.engine.train_run import TrainEngine
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec

TINY_LLAMA = Path(__file__).parent / "fixtures" / "tiny-llama.json"
LAYERS = 2  # the tiny Llama's decoder layers
STEPS = 3


def tiny_recipe() -> TrainSpec:
    base = RunSpec(
        model="tiny-llama", source="config", path=str(TINY_LLAMA), device="cpu", batch=2,
        dtype="float32",
    )  # fmt: skip
    return TrainSpec(base=base, method="lora", seq=16, steps=STEPS)


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A LoRA run of the engine in this process: what it wrote, each write apart, and
    every device synchronisation and saved-tensor hook it made, by step."""
    syncs: list[str] = []
    packs: list[int | None] = []
    writes: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: syncs.append("torch.cuda"))
    monkeypatch.setattr(train_run, "synchronize", lambda device: syncs.append("step edge"))
    pack = train_parts.SavedBytes._pack

    def counted_pack(self: Any, t: torch.Tensor) -> torch.Tensor:
        packs.append(engine.token)
        return pack(self, t)

    monkeypatch.setattr(train_parts.SavedBytes, "_pack", counted_pack)
    # samples held for the whole phase however slow this machine is (the time limit
    # has its own test)
    monkeypatch.setattr(train_run, "HOLD_S", float("inf"))
    engine = TrainEngine(tiny_recipe(), writes.append)
    assert engine.run() == 0
    return {"syncs": syncs, "packs": packs, "writes": writes}


@pytest.mark.engine
def test_layer_samples_never_synchronise_the_device(trained: dict[str, Any]) -> None:
    events = [ev.decode(line) for chunk in trained["writes"] for line in chunk.splitlines()]
    samples = [e for e in events if isinstance(e, ev.Sample) and e.phase == "backward"]
    assert len(samples) >= STEPS * (LAYERS + 2)  # a sample after every layer, and the edges
    # the device waits only at a step's edges (its time), never for a sample
    assert trained["syncs"] == ["step edge"] * (2 * STEPS)


@pytest.mark.engine
def test_the_parts_are_counted_in_step_1_only(trained: dict[str, Any]) -> None:
    assert trained["packs"] and set(trained["packs"]) == {1}
    events = [ev.decode(line) for chunk in trained["writes"] for line in chunk.splitlines()]
    steps = [e for e in events if isinstance(e, ev.TrainStep)]
    assert [s.step for s in steps] == [1, 2, 3]
    assert steps[0].activation_bytes and steps[0].gradient_bytes
    assert steps[0].optimizer_state_bytes
    assert all(s.activation_bytes is None and s.gradient_bytes is None for s in steps[1:])
    assert all(s.optimizer_state_bytes is None for s in steps[1:])


@pytest.mark.engine
def test_a_phases_samples_go_out_in_one_write(trained: dict[str, Any]) -> None:
    """Each write of the training steps holds at most one phase's samples; the forward's
    per-layer samples share a write."""
    chunks = [[ev.decode(line) for line in chunk.splitlines()] for chunk in trained["writes"]]
    training = [c for c in chunks if any(isinstance(e, ev.Sample) and e.phase == "forward"
                                         for e in c)]  # fmt: skip
    assert len(training) == STEPS  # one forward a step: one write of its samples
    for chunk in training:
        samples = [e for e in chunk if isinstance(e, ev.Sample)]
        assert {e.phase for e in samples} == {"forward"}
        assert len(samples) >= LAYERS + 2


def test_a_long_phase_writes_its_samples_as_they_age() -> None:
    """Held samples go out once the first of them is HOLD_S old (by the samples' own
    clock), so a long forward still shows live."""
    writes: list[str] = []
    engine = TrainEngine(tiny_recipe(), writes.append)
    engine._record = train_run.StepRecord(1, 0.0)

    def sample(t: float) -> None:
        engine.emit(ev.Sample(None, t, "forward", 1, 2, 3, None))

    sample(10.0)
    sample(10.0 + train_run.HOLD_S / 2)
    assert writes == []  # held: younger than HOLD_S
    sample(10.0 + 2 * train_run.HOLD_S)
    assert len(writes) == 1 and len(writes[0].splitlines()) == 3
    sample(11.0)
    engine.emit(ev.Phase("backward", 11.01))  # any other event writes what is held first
    assert [ev.decode(line) for line in writes[1].splitlines()] == [
        ev.Sample(None, 11.0, "forward", 1, 2, 3, None)
    ]
    assert ev.decode(writes[2]) == ev.Phase("backward", 11.01)
