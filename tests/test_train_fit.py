"""The search behind "the largest micro-batch / sequence that fits"."""

from __future__ import annotations

import pytest
from helpers import TINY_LLAMA

from vramtui.predict.training.fit import largest


@pytest.mark.parametrize("answer", [0, 1, 2, 7, 64, 100])
@pytest.mark.parametrize("guess", [1, 5, 50, 100])
def test_largest_finds_the_edge_from_any_guess(answer: int, guess: int) -> None:
    asked: list[int] = []

    def fits(n: int) -> bool:
        asked.append(n)
        return n <= answer

    assert largest(fits, guess, limit=100) == answer
    assert len(asked) <= 16


@pytest.mark.slow
@pytest.mark.parametrize("field", ["batch", "seq"])
def test_the_answer_fits_and_one_more_does_not(field: str) -> None:
    """Searched on interpolated traces, checked on traced ones."""
    from dataclasses import replace

    pytest.importorskip("peft", reason="the .[train] extra is not installed")
    from vramtui.predict.training.fit import Room, largest_that_fits
    from vramtui.predict.training.replay import estimate_training
    from vramtui.predict.training.step_tracer import Request, trace
    from vramtui.predict.training.trace import TrainShape, TrainTrace, parse

    base = TrainShape(method="lora", batch=2, seq=32, backend="cuda", attn="eager")
    traced: dict[int, TrainTrace] = {}

    def shaped(n: int) -> TrainShape:
        return replace(base, **{field: n})  # type: ignore[arg-type]

    def trace_at(n: int) -> TrainTrace:
        traced[n] = parse(trace(Request(config=TINY_LLAMA, **vars(shaped(n)))))
        return traced[n]

    def peak(n: int) -> int:
        return estimate_training(trace_at(n), shaped(n)).peak_reserved_bytes

    room = Room((peak(2) + peak(40)) // 2, capped=True)
    most = largest_that_fits(trace_at, lambda t, n: estimate_training(t, shaped(n)), room, 2, 512)
    assert 2 <= most < 40
    assert peak(most) <= room.bytes < peak(most + 1)
