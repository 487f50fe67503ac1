"""The training step traced on the meta device allocates, event for event, what the same
model and recipe allocate on real CPU tensors under the same accounting (QLoRA, whose 4-bit
kernel on the CPU hides its forward transient: phase by phase)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import TINY_LLAMA

from vramtui.models.hf import transformers_config
from vramtui.predict.training.recipe import apply_recipe
from vramtui.predict.training.step_tracer import (
    EventTracker,
    Request,
    build,
    math_attention,
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


def _at_marks(data_events: list[int], marks: list[Any]) -> dict[tuple[int, str], tuple[int, int]]:
    """(live bytes at the phase's start, the most alive during it) for every phase."""
    bounds = [index for *_, index in marks] + [len(data_events)]
    return {
        (step, phase): (
            live_bytes(data_events[:start])[0],
            _peak_between(data_events, start, end),
        )
        for (step, phase, start), end in zip(marks, bounds[1:], strict=True)
    }


def _peak_between(events: list[int], start: int, end: int) -> int:
    """The most alive from event `start` to event `end` (the bytes alive at the start)."""
    sizes: list[int] = []
    live = 0
    peak = live_bytes(events[:start])[0]
    for index, value in enumerate(events[:end]):
        if value > 0:
            sizes.append(value)
            live += value
        else:
            live -= sizes[-value - 1]
        if index >= start:
            peak = max(peak, live)
    return peak


def _real_qlora(request: Request) -> EventTracker:
    """A real bitsandbytes nf4 base (double quantization, bfloat16 compute), built as a
    training run builds it, stepped with torch's own attention, math kernel only."""
    pytest.importorskip("bitsandbytes", reason="the .[train] extra is not installed")
    from vramtui.measure.engine.quantize import quantization_config
    from vramtui.measure.engine.random_weights import load_random

    torch.manual_seed(0)
    four_bit = quantization_config("nf4", True, torch.bfloat16)
    config = transformers_config(request.config)
    base = load_random(
        config, torch.device("cpu"), torch.bfloat16, request.attn, None, None, four_bit
    )
    model = apply_recipe(base, "qlora", request.grad_checkpointing)
    tracker = EventTracker(1)
    run_steps(model, request, tracker, attention=math_attention)
    return tracker


@pytest.mark.parametrize("checkpointing", [False, True])
def test_qlora_keeps_the_math_kernels_float32_scores_as_a_real_4bit_step_does(
    checkpointing: bool,
) -> None:
    """QLoRA's projections return float32 (peft casts the norms to float32), which no
    fused attention kernel of a GPU takes with grouped-query heads: the math kernel runs
    and keeps its score matrix. The meta trace for a GPU keeps, phase by phase, what a
    real 4-bit step keeps with that kernel (the CPU's 4-bit forward dequantizes inside
    its kernel, so single transients differ; the live bytes and peaks do not)."""
    request = _request(
        method="qlora", dtype="bfloat16", attn="sdpa", backend="cuda", seq=64,
        grad_checkpointing=checkpointing,
    )  # fmt: skip
    meta = trace(request)
    real = _real_qlora(request)
    assert [m[:2] for m in meta["marks"]] == [m[:2] for m in real.marks]
    assert _at_marks(meta["events"], meta["marks"]) == _at_marks(real.events, real.marks)
    assert live_peak(meta["events"]) == live_peak(real.events) > 0
