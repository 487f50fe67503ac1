"""The training estimate: the traced steps replayed on the allocator model, by term."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import TINY_LLAMA

from vramtui.predict.training.optimizer_states import optimizer_states
from vramtui.predict.training.replay import TrainingEstimate, estimate_training
from vramtui.predict.training.step_tracer import Request, trace
from vramtui.predict.training.trace import TrainShape, TrainTrace, live_peak, parse

pytest.importorskip("peft", reason="the .[train] extra is not installed")
pytestmark = pytest.mark.slow  # real training steps on the CPU, in this process


def _traced(shape: TrainShape) -> TrainTrace:
    fields = {k: v for k, v in vars(shape).items()}
    return parse(trace(Request(config=TINY_LLAMA, **fields)))


def _estimate(**overrides: object) -> tuple[TrainTrace, TrainingEstimate]:
    shape = replace(TrainShape(batch=2, seq=32, backend="cpu", dtype="float32"), **overrides)
    traced = _traced(shape)
    return traced, estimate_training(traced, shape)


def test_off_cuda_the_peak_is_the_weights_plus_the_traced_peak() -> None:
    traced, est = _estimate()
    assert est.peak_allocated_bytes == est.weights_bytes + live_peak(traced.events)
    assert est.peak_reserved_bytes == est.peak_allocated_bytes  # nothing cached
    assert est.context_bytes == 0
    assert est.gradients_bytes == est.trainable_weights_bytes
    assert est.weights_bytes == est.trainable_weights_bytes + sum(traced.buffers)
    assert est.optimizer_states_bytes == 2 * est.trainable_weights_bytes


def test_lora_trains_only_the_adapters() -> None:
    _, full = _estimate()
    traced, lora = _estimate(method="lora")
    assert 0 < lora.trainable_weights_bytes < full.trainable_weights_bytes / 2
    assert all("lora_" in p.name for p in traced.params if p.trainable)
    assert lora.frozen_weights_bytes == full.weights_bytes
    assert lora.optimizer_states_bytes == 2 * lora.trainable_weights_bytes


def test_qlora_stores_the_linear_layers_in_four_bits() -> None:
    _, lora = _estimate(method="lora")
    traced, qlora = _estimate(method="qlora")
    assert any(p.four_bit for p in traced.params)
    assert qlora.frozen_weights_bytes < lora.frozen_weights_bytes


def test_an_untraced_optimizer_has_its_states_replayed() -> None:
    traced, est = _estimate(optim="adamw-8bit")
    assert not traced.optimizer_traced
    states = optimizer_states("adamw-8bit", list(traced.params))
    assert est.optimizer_states_bytes == states.device_bytes > 0
    # the states stay alive from step 1's optimizer phase on
    assert est.phase_peaks["forward"] >= est.weights_bytes + states.device_bytes


def test_on_cuda_the_allocator_rounds_caches_and_adds_the_context() -> None:
    _, cpu = _estimate()
    _, cuda = _estimate(backend="cuda")
    assert cuda.peak_allocated_bytes > cpu.peak_allocated_bytes  # 512 B blocks, workspaces
    assert cuda.peak_reserved_bytes >= cuda.peak_allocated_bytes
    assert cuda.peak_total_bytes == cuda.peak_reserved_bytes + cuda.context_bytes
    assert cuda.peak_step == 2 and cuda.peak_phase in cuda.phase_peaks


def test_a_longer_sequence_needs_more_activations() -> None:
    _, short = _estimate()
    _, long = _estimate(seq=96)
    assert long.activations_bytes > 2 * short.activations_bytes
