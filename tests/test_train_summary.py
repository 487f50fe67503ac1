"""A training session's record: its events on the wire, its JSON's training section (the
peak's phase and step, each phase's peak, the breakdown), and a saved one read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.measure.session import NvmlSample, Session
from vramtui.measure.summary_format import read_summary, session_from, summary
from vramtui.report.summary_text import summary_text
from vramtui.runspec import RunSpec
from vramtui.runspec.program_spec import saved_spec
from vramtui.runspec.train_spec import TrainSpec

MB = 10**6
SPEC = TrainSpec(base=RunSpec(model="llama-3.2-1b", batch=4, dtype="bfloat16"), seq=512, steps=2)
LOADED = ev.TrainLoaded(100 * MB, 900 * MB, 50, 450, "torch.AdamW", False)


def step(n: int, t: float, peaks: dict[str, int | None]) -> ev.TrainStep:
    """Step n; the parts are counted in step 1 only."""
    counted = n == 1
    return ev.TrainStep(
        step=n, t_start=t, t_end=t + 1.0, tokens=2048, loss=2.5, phase_peaks=peaks,
        gradient_bytes=900 * MB if counted else None,
        optimizer_state_bytes=1800 * MB if counted else None,
        activation_bytes=700 * MB if counted else None, forward_growth_bytes=710 * MB,
    )  # fmt: skip


STEP1 = step(1, 10.0, {"forward": 1700 * MB, "backward": 2600 * MB, "optimizer": 3700 * MB,
                       "zero_grad": 3600 * MB})  # fmt: skip
STEP2 = step(2, 11.0, {"forward": 3500 * MB, "backward": 4100 * MB, "optimizer": 3700 * MB,
                       "zero_grad": 3600 * MB})  # fmt: skip


def cuda_session() -> Session:
    session = Session(SPEC, Environment(), t0=0.0)
    hello = ev.Hello(7, "cuda:0", "cuda", "H100", None, 80 * 10**9, "torch.cuda", {})
    loaded = ev.Loaded(1000 * MB, 500, "bfloat16", 2048, 16, 2048, 8, 64, 512, 1.0)
    events: list[ev.Event] = [hello, ev.Phase("load", 1.0), loaded, LOADED]
    events.append(ev.Phase("forward", 10.0))
    events.append(ev.Sample(None, 10.5, "forward", 1500 * MB, 4000 * MB, 1700 * MB, None))
    events += [STEP1, ev.Phase("backward", 11.5)]
    events.append(ev.Sample(None, 11.6, "backward", 3900 * MB, 4500 * MB, 4100 * MB, None))
    done = ev.Done(4096, 1.0, 1.0, 1.0, 2.0, 2048.0, 2048.0, 4100 * MB)
    events += [STEP2, ev.Phase("done", 12.0), done]
    session.add_nvml(NvmlSample(11.6, 5000 * MB, 5100 * MB, 80 * 10**9))
    for event in events:
        session.apply(event)
    return session


def test_training_events_cross_the_wire_unchanged() -> None:
    for event in (LOADED, STEP2):
        assert ev.decode(ev.encode(event)) == event


def test_the_peak_is_named_by_phase_and_step_and_its_parts_measured() -> None:
    saved = json.loads(json.dumps(summary(cuda_session().snapshot())))
    training = saved["training"]
    assert training["peak"] == {"value": 4100 * MB, "step": 2, "phase": "backward"}
    assert training["phase_peaks"]["forward"] == {"value": 3500 * MB, "step": 2}
    assert training["phase_peaks"]["optimizer"] == {"value": 3700 * MB, "step": 1}
    parts = training["breakdown"]
    # backward of step 2 at its start: the weights, the optimizer's states (step 1 made
    # them) and every saved activation; no gradient yet (one micro-batch a step)
    held = 100 * MB + 900 * MB + 1800 * MB + 700 * MB
    assert parts["transients_bytes"] == 4100 * MB - held
    assert parts["gradients_bytes"] == 0
    assert parts["activations_saved_bytes"] == 700 * MB
    assert sum_of_parts(parts) == training["peak"]["value"] == 4100 * MB
    assert parts["allocator_slack_bytes"] == 4500 * MB - 4100 * MB
    assert parts["cuda_context_bytes"] == 5000 * MB - 4500 * MB
    assert training["steps_done"] == 2 and training["steady_tokens_per_s"] == 2048.0


def test_a_saved_training_session_reads_back() -> None:
    saved = json.loads(json.dumps(summary(cuda_session().snapshot())))
    assert saved_spec(saved["spec"]) == SPEC
    rebuilt = summary(session_from(saved, []).snapshot())
    assert rebuilt["training"]["steps"] == saved["training"]["steps"]
    assert rebuilt["training"]["peak"] == saved["training"]["peak"]
    text = summary_text(read_summary(saved))
    assert "training, 2/2 steps" in text
    assert "in backward of step 2" in text
    assert SPEC.recipe() in text
    assert "CUDA context (NVML - reserved)" in text


def test_paged_optimizer_states_are_not_counted_as_allocated() -> None:
    from dataclasses import replace

    session = cuda_session()
    counted = replace(STEP1, step=3, t_start=12.5, t_end=13.0, paged_state_bytes=1500 * MB)
    session.apply(counted)
    training = summary(session.snapshot())["training"]
    parts = training["breakdown"]
    assert parts["optimizer_states_paged_bytes"] == 1500 * MB
    held = 100 * MB + 900 * MB + (1800 - 1500) * MB + 700 * MB  # backward of step 2
    assert parts["transients_bytes"] == 4100 * MB - held
    assert sum_of_parts(parts) == 4100 * MB


def sum_of_parts(parts: dict[str, int | None]) -> int:
    """What the parts hold in the allocator's figure (paged states are outside it)."""
    names = ("frozen_weights", "trainable_weights", "gradients", "optimizer_states",
             "activations_saved", "transients")  # fmt: skip
    held = sum(parts[f"{name}_bytes"] or 0 for name in names)
    return held - (parts["optimizer_states_paged_bytes"] or 0)


def test_the_parts_of_an_optimizer_peak_hold_every_gradient_and_no_activation() -> None:
    session = Session(SPEC, Environment(), t0=0.0)
    hello = ev.Hello(7, "cuda:0", "cuda", "H100", None, 80 * 10**9, "torch.cuda", {})
    peaks: dict[str, int | None] = {"forward": 1700 * MB, "backward": 2600 * MB,
                                    "optimizer": 3800 * MB}  # fmt: skip
    for event in (hello, LOADED, step(1, 10.0, peaks)):
        session.apply(event)
    training = summary(session.snapshot())["training"]
    parts = training["breakdown"]
    assert training["peak"] == {"value": 3800 * MB, "step": 1, "phase": "optimizer"}
    assert parts["gradients_bytes"] == 900 * MB and parts["activations_saved_bytes"] == 0
    assert parts["optimizer_states_bytes"] == 1800 * MB  # made inside this phase
    assert parts["transients_bytes"] == 3800 * MB - (100 + 900 + 900 + 1800) * MB
    assert sum_of_parts(parts) == 3800 * MB


GPU_RESULTS = Path(__file__).parents[1] / "benchmarks" / "results" / "train_gpu"


@pytest.mark.parametrize("name", ["abba-llama1b-lora-B1.json", "abba-llama1b-lora-B2.json"])
def test_committed_gpu_sessions_take_apart_to_their_peak(name: str) -> None:
    """The H100 sessions (torch 2.11, transformers 5.17) recomputed from their raw
    figures: the parts at the peak's moment sum to peak allocated, none negative."""
    saved = json.loads((GPU_RESULTS / name).read_text())
    training = summary(session_from(saved, []).snapshot())["training"]
    parts = training["breakdown"]
    assert training["peak"]["value"] == saved["peak_allocated_bytes"]
    assert sum_of_parts(parts) == saved["peak_allocated_bytes"]
    assert all(v is None or v >= 0 for v in parts.values())
    # LoRA's backward peak: every saved activation still held, no gradient yet
    assert training["peak"]["phase"] == "backward"
    assert parts["activations_saved_bytes"] == saved["training"]["steps"][0]["activation_bytes"]
    assert parts["transients_bytes"] < parts["activations_saved_bytes"]


def test_a_capped_training_run_says_so() -> None:
    capped = TrainSpec(base=RunSpec(model="llama-3.2-1b", cap_bytes=8 * 2**30))
    session = Session(capped, Environment(), t0=0.0)
    assert read_summary(summary(session.snapshot())).cap_bytes == 8 * 2**30


def test_a_generation_session_has_no_training_section() -> None:
    session = Session(RunSpec(), Environment(), t0=0.0)
    assert summary(session.snapshot())["training"] is None
    assert read_summary(summary(session.snapshot())).training is None


def test_a_moment_is_placed_in_its_training_step() -> None:
    view = cuda_session().snapshot()
    assert view.train_step_at(0.5) is None  # loading
    assert view.train_step_at(10.5) == 1
    assert view.train_step_at(11.6) == 2
    assert view.train_step_at(12.5) is None  # done
    in_progress = Session(SPEC, Environment(), t0=0.0)
    for event in (ev.Phase("forward", 10.0), STEP1, ev.Phase("forward", 11.0)):
        in_progress.apply(event)
    assert in_progress.snapshot().train_step_at(11.5) == 2  # step 2, not told yet


def test_committed_gpu_cells_leave_the_same_transients_per_logit() -> None:
    """Every cell of the H100 check (train_gpu-h100.json: torch 2.11, transformers 5.17)
    taken apart from its raw counts: the transients of its backward peak are the loss's
    (the logits, their float32 copy, their gradients), the same bytes a logit whatever
    the method, the optimizer or checkpointing; llama-3.2-1b and qwen2.5-0.5b apart only
    by their vocabularies."""
    from vramtui.measure.train_summary import TrainBreakdown, allocated_parts, moment_parts
    from vramtui.models.catalogue import lookup

    saved = json.loads((GPU_RESULTS / "train_gpu-h100.json").read_text())
    names = ("frozen_weights", "trainable_weights", "gradients", "optimizer_states",
             "optimizer_states_paged", "activations_saved")  # fmt: skip
    per_logit = {}
    for cell in saved["cells"]:
        if cell["peak_phase"] is None:  # out of memory before a step ended
            continue
        run = TrainBreakdown(**{n: cell["breakdown"][f"{n}_bytes"] for n in names})
        parts = moment_parts(cell["peak_phase"], cell["peak_step"], run, grad_accum=1)
        transients = cell["peak_allocated_bytes"] - allocated_parts(parts)
        logits = 4 * 512 * lookup(cell["model"]).config["vocab_size"]  # micro-batch 4, sequence 512
        per_logit[cell["cell"]] = transients / logits
    assert len(per_logit) >= 6
    assert min(per_logit.values()) > 0
    assert max(per_logit.values()) / min(per_logit.values()) < 1.02
