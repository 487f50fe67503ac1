"""The training step traced on the meta device allocates, event for event, what the same
model and recipe allocate on real CPU tensors under the same accounting."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import TINY_LLAMA

from vramtui.predict.training.step_tracer import (
    EventTracker,
    Request,
    build,
    run_steps,
    trace,
)
from vramtui.predict.training.trace import live_bytes, live_peak

pytest.importorskip("peft", reason="the .[train] extra is not installed")
pytestmark = pytest.mark.slow  # real training steps on the CPU, in this process


def _request(**overrides: Any) -> Request:
    values: dict[str, Any] = dict(
        config=TINY_LLAMA, dtype="float32", attn="eager", backend="cpu", batch=2, seq=24
    )
    values.update(overrides)
    return Request(**values)


def _real_events(request: Request) -> EventTracker:
    torch.manual_seed(0)
    model = build(request, device="cpu")
    tracker = EventTracker(1)
    run_steps(model, request, tracker)
    return tracker


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_meta_trace_allocates_what_a_real_cpu_step_does(method: str, checkpointing: bool) -> None:
    request = _request(method=method, grad_checkpointing=checkpointing)
    meta = trace(request)
    real = _real_events(request)
    assert live_peak(meta["events"]) == live_peak(real.events) > 0
    assert meta["events"] == real.events
    assert meta["marks"] == real.marks
    trained = [p for p in meta["params"] if p["trainable"]]
    assert (len(trained) == len(meta["params"])) == (method == "full")
    # after two steps only AdamW's two states per trained parameter are left alive
    end = meta["marks"][-1][2]
    left, _ = live_bytes(meta["events"][:end])
    assert left == 2 * sum(p["bytes"] for p in trained)


def test_checkpointing_keeps_fewer_activations() -> None:
    """Between the forward's start and its end, checkpointing keeps each layer's input
    only: fewer live bytes, and the layers recomputed in backward (more events)."""

    def forward_live(request: Request) -> tuple[int, int]:
        data = trace(request)
        marks = {(step, phase): index for step, phase, index in data["marks"]}
        events = data["events"]
        before = live_bytes(events[: marks[(2, "forward")]])[0]
        after = live_bytes(events[: marks[(2, "backward")]])[0]
        return after - before, len(events)

    plain, plain_events = forward_live(_request())
    kept, kept_events = forward_live(_request(grad_checkpointing=True))
    assert kept < plain
    assert kept_events > plain_events


def test_fused_attention_stand_in_traces_as_it_runs() -> None:
    """sdpa's stand-in (what flash attention keeps) is the same on meta and real tensors,
    and keeps less than eager attention's score matrices."""
    request = _request(attn="sdpa", seq=64)
    meta = trace(request)
    assert meta["events"] == _real_events(request).events
    assert live_peak(meta["events"]) < live_peak(trace(_request(seq=64))["events"])


def test_gradient_accumulation_adds_into_the_gradients_it_has() -> None:
    """A second micro-batch traces as it runs, and leaves no second set of gradients."""
    request = _request(grad_accum=2)
    meta = trace(request)
    assert meta["events"] == _real_events(request).events

    def at_optimizer(data: dict[str, Any]) -> int:
        index = next(i for step, phase, i in data["marks"] if (step, phase) == (1, "optimizer"))
        return live_bytes(data["events"][:index])[0]

    single = trace(_request())
    assert len(meta["events"]) > len(single["events"])
    assert at_optimizer(meta) == at_optimizer(single)
