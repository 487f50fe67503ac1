"""The optimizer states' closed form against real optimizers after one step on the CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vramtui.predict.training.optimizer_states import (
    MIN_8BIT_SIZE,
    PAGED_MIN,
    Param,
    optimizer_states,
    step_transient,
)

# a matrix, a vector and one small and one large enough for 8-bit states (and paging)
SHAPES = [(64, 96), (96,), (8, 8), (400, 300)]


def _params(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in SHAPES]


def _described(params: list[torch.nn.Parameter]) -> list[Param]:
    dtype = str(params[0].dtype).removeprefix("torch.")
    return [Param(f"p{i}", tuple(p.shape), dtype, True) for i, p in enumerate(params)]


def _state_bytes_after_one_step(opt: Any, params: list[torch.nn.Parameter]) -> int:
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    seen: set[int] = set()
    total = 0
    for state in opt.state.values():
        for value in state.values():
            # a 0-dim tensor is AdamW's step, kept on the CPU even when training on a GPU
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                key = value.untyped_storage().data_ptr()
                if key not in seen:
                    seen.add(key)
                    total += value.untyped_storage().nbytes()
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adamw_states_are_two_copies_in_the_parameters_dtype(dtype: torch.dtype) -> None:
    params = _params(dtype)
    real = _state_bytes_after_one_step(torch.optim.AdamW(params), params)
    assert optimizer_states("adamw", _described(params)).device_bytes == real
    assert real == 2 * sum(p.numel() * p.element_size() for p in params)


def test_sgd_with_its_defaults_keeps_no_state() -> None:
    params = _params(torch.float32)
    real = _state_bytes_after_one_step(torch.optim.SGD(params, lr=0.1), params)
    assert optimizer_states("sgd", _described(params)).device_bytes == real == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adafactor_states_are_factored_for_matrices(dtype: torch.dtype) -> None:
    from transformers.optimization import Adafactor

    params = _params(dtype)
    real = _state_bytes_after_one_step(Adafactor(params), params)
    assert optimizer_states("adafactor", _described(params)).device_bytes == real
    assert real < sum(p.numel() * 4 for p in params)  # factored: far below one copy


def test_bitsandbytes_adamw8bit_states_and_block_layout() -> None:
    bnb = pytest.importorskip("bitsandbytes", reason="the .[train] extra is not installed")
    params = _params(torch.float32)
    opt = bnb.optim.AdamW8bit(params)
    real = _state_bytes_after_one_step(opt, params)
    states = optimizer_states("adamw-8bit", _described(params))
    assert states.device_bytes == real
    small = [p for p in params if p.numel() < MIN_8BIT_SIZE]
    assert small and all(opt.state[p]["state1"].dtype == torch.float32 for p in small)
    large = [p for p in params if p.numel() >= MIN_8BIT_SIZE]
    assert all(opt.state[p]["state1"].dtype == torch.uint8 for p in large)


def test_paged_adamw8bit_moves_large_state_buffers_out_of_the_allocator() -> None:
    params = _described(_params(torch.float32))
    plain = optimizer_states("adamw-8bit", params)
    paged = optimizer_states("paged-adamw-8bit", params)
    large = sum(p.numel for p in params if p.numel >= PAGED_MIN)
    assert paged.paged_bytes == 2 * large
    assert paged.device_bytes + paged.paged_bytes == plain.device_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shapes", [SHAPES, [(5000,), (30, 40)], [(2, 3, 40, 50)]])
def test_adafactor_step_transient_is_what_a_real_step_holds(
    dtype: torch.dtype, shapes: list[tuple[int, ...]]
) -> None:
    """Adafactor cannot run on meta: its step's temporaries come from step_transient;
    a real step 2 on the CPU, counted as the tracer counts, holds exactly that."""
    from transformers.optimization import Adafactor

    from vramtui.predict.training.step_tracer import EventTracker
    from vramtui.predict.training.trace import live_bytes

    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = Adafactor(params)
    tracker = EventTracker(1)
    tracker.known([*params, *(p.grad for p in params)])
    with tracker:
        opt.step()
        tracker.phase(2, "adafactor")  # its scalars counted: on a GPU they are device tensors
        opt.step()
        tracker.phase(3, "end")
    start, end = tracker.marks[0][2], tracker.marks[1][2]
    states = live_bytes(tracker.events[:start])[0]
    held = max(live_bytes(tracker.events[:i])[0] for i in range(start, end + 1)) - states
    assert step_transient("adafactor", _described(params)) == held > 0
