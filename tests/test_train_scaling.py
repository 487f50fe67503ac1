"""Traces at other micro-batches and sequences, interpolated from three traced sizes."""

from __future__ import annotations

import pytest
from helpers import TINY_LLAMA

from vramtui.predict.training.scaling import interpolate
from vramtui.predict.training.step_tracer import Request, trace
from vramtui.predict.training.trace import TrainTrace, parse

pytest.importorskip("peft", reason="the .[train] extra is not installed")
pytestmark = pytest.mark.slow  # real training steps on the CPU, in this process


def _trace(**shape: object) -> TrainTrace:
    values: dict[str, object] = dict(config=TINY_LLAMA, backend="cpu", dtype="float32", seq=16)
    values.update(shape)
    return parse(trace(Request(**values)))  # type: ignore[arg-type]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_sequence_interpolated_is_the_sequence_traced(attn: str) -> None:
    points = {seq: _trace(seq=seq, attn=attn) for seq in (16, 32, 48)}
    assert interpolate(points, 80) == _trace(seq=80, attn=attn)


def test_a_micro_batch_interpolated_is_the_micro_batch_traced() -> None:
    points = {batch: _trace(batch=batch, method="lora") for batch in (2, 3, 4)}
    assert interpolate(points, 7) == _trace(batch=7, method="lora")


def test_no_interpolation_between_different_steps() -> None:
    points = {16: _trace(seq=16), 32: _trace(seq=32), 48: _trace(seq=48, method="lora")}
    assert interpolate(points, 64) is None
