"""`vramtui fit --workload lora|qlora|full`: the training planner's answers by its own
figures, what it traces and when, --check's exit codes, JSON rows and refusals.

A synthetic tracer stands in for the meta-device tracer (a child process a size): its
steps allocate what a transformer's do, polynomial in the micro-batch and sequence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import run_cli

from vramtui.measure import nvml
from vramtui.models.catalogue import CATALOGUE, Entry
from vramtui.predict import planner as generate_planner
from vramtui.predict.fit_search import Budget, Search
from vramtui.predict.planner import NotEstimated, Setting
from vramtui.predict.training import planner as train_planner
from vramtui.predict.training.config_steps import config_train_trace
from vramtui.predict.training.optimizer_states import Param
from vramtui.predict.training.planner import (
    NotTraced,
    Tracer,
    TrainPlanner,
    WorkloadPlanner,
)
from vramtui.predict.training.trace import Mark, TrainShape, TrainTrace

MODEL = CATALOGUE["pythia-410m"]  # 2048 positions
HIDDEN, LAYERS = 1024, 8
TRAINING_TERMS = ("gradients", "optimizer states", "activations", "allocator slack")


def synthetic(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace:
    """Two steps: per layer an activation saved for backward (b * s * hidden) and eager
    attention's scores (b * heads * s * s), freed in backward; the gradient made in
    backward and freed by zero_grad."""
    b, s = shape.batch, shape.seq
    params = (Param("w", (HIDDEN, HIDDEN), shape.dtype, True),)
    events: list[int] = []
    marks: list[Mark] = []
    count = 0

    def alloc(size: int) -> int:
        nonlocal count
        events.append(size)
        count += 1
        return count - 1

    for step in (1, 2):
        marks.append(Mark(step, "forward", len(events)))
        saved = [alloc(b * s * HIDDEN * 2) for _ in range(LAYERS)]
        scores = alloc(b * 16 * s * s * 2)
        events.append(-(scores + 1))
        marks.append(Mark(step, "backward", len(events)))
        for i in reversed(saved):
            events.append(-(alloc(b * s * HIDDEN * 4) + 1))
            events.append(-(i + 1))
        grad = alloc(params[0].nbytes)
        marks.append(Mark(step, "optimizer", len(events)))
        marks.append(Mark(step, "zero_grad", len(events)))
        events.append(-(grad + 1))
    return TrainTrace("Synthetic", params, (4096,), tuple(events), tuple(marks), False)


class Counting:
    """The synthetic tracer, counting the sizes it was asked to trace."""

    def __init__(self) -> None:
        self.shapes: list[TrainShape] = []

    def __call__(self, name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace:
        self.shapes.append(shape)
        return synthetic(name, config, shape)


def _nothing_cached(name: str, config: dict[str, Any], shape: TrainShape) -> None:
    return None


def _planner(tracer: Counting | None = None, may_trace: bool = True) -> TrainPlanner:
    return TrainPlanner(tracer=tracer or Counting(), cached=_nothing_cached, may_trace=may_trace)


ASKED = Setting(workload="lora", prompt_tokens=8, tokens=1016, batch=2, dtype="bfloat16")


def _traced_need(setting: Setting) -> int:
    """The need from a trace at exactly this setting (the planner's exact figure)."""
    return _planner().peak(MODEL, setting).need_bytes


def _budget_between(low: Setting, high: Setting) -> Budget:
    need = (_traced_need(low) + _traced_need(high)) // 2
    return Budget(need, 0, 0)


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "gpus", lambda: [])


def _varied(field: str, n: int) -> Setting:
    return ASKED.with_context(n) if field == "context" else ASKED.with_batch(n)


@pytest.mark.parametrize(("field", "low", "high"), [("context", 1200, 1900), ("batch", 5, 40)])
def test_the_largest_fits_and_one_more_does_not(field: str, low: int, high: int) -> None:
    """The largest context (batch) by the planner's own traced figures, found on a few
    traces: the grid interpolated, traced only near the line."""
    budget = _budget_between(_varied(field, low), _varied(field, high))
    tracer = Counting()
    search = Search(_planner(tracer), budget)
    most = (
        search.max_context(MODEL, ASKED) if field == "context" else search.max_batch(MODEL, ASKED)
    )
    assert low <= most < high
    assert _traced_need(_varied(field, most)) <= budget.usable_bytes
    assert _traced_need(_varied(field, most + 1)) > budget.usable_bytes
    assert len(tracer.shapes) < 20


def test_the_interpolated_need_is_the_traced_one_where_the_step_keeps_its_shape() -> None:
    planner = _planner()
    planner.peak(MODEL, ASKED, exact=False)  # the grid sits around the asked setting
    for setting in (ASKED.with_context(1500), ASKED.with_batch(7), ASKED.with_batch(1)):
        guessed = planner.peak(MODEL, setting, exact=False)
        assert guessed.basis == "interpolated" and not guessed.replayed
        assert guessed.need_bytes == _traced_need(setting)


def test_the_peak_names_gradients_and_optimizer_states() -> None:
    peak = _planner().peak(MODEL, ASKED)
    terms = dict(peak.other_terms)
    assert peak.basis == "traced" and peak.kv_cache_bytes == 0
    assert terms["gradients"] == HIDDEN * HIDDEN * 2
    assert terms["optimizer states"] == 2 * HIDDEN * HIDDEN * 2  # AdamW: two like it
    assert peak.need_bytes >= peak.weights_bytes + terms["optimizer states"]
    assert peak.binding(peak.need_bytes) in TRAINING_TERMS


def test_without_tracing_an_untraced_model_is_written_from_its_config() -> None:
    """No trace cached and tracing not allowed: the approximate step (config_steps.py)
    for a family written out, NotTraced for another (OPT); nothing traced."""
    tracer = Counting()
    planner = _planner(tracer, may_trace=False)
    assert planner.peak(MODEL, ASKED, exact=False).basis == "approximate"
    with pytest.raises(NotTraced):
        planner.peak(CATALOGUE["gemma-2-2b"], ASKED, exact=False)
    assert tracer.shapes == []


def test_an_approximate_estimate_is_written_once_a_model_and_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[TrainShape] = []

    def counting(config: dict[str, Any], shape: TrainShape) -> TrainTrace | None:
        written.append(shape)
        return config_train_trace(config, shape)

    monkeypatch.setattr(train_planner, "config_train_trace", counting)
    planner = _planner(may_trace=False)
    first = planner.peak(MODEL, ASKED, exact=False)
    again = planner.peak(MODEL, ASKED, exact=True)
    assert first == again and len(written) == 1


def test_training_refuses_a_quant_and_generation_is_still_the_estimators() -> None:
    with pytest.raises(NotEstimated, match="takes no --quant"):
        _planner().check("qlora", "nf4")
    both = WorkloadPlanner(generate_planner.GeneratePlanner(), _planner())
    both.check("generate", "nf4")
    both.check("lora", "none")
    generated = both.peak(MODEL, Setting())
    assert generated.basis != "interpolated" and not generated.other_terms


# -- the command


@pytest.fixture
def fake_tracer(monkeypatch: pytest.MonkeyPatch) -> Counting:
    tracer = Counting()
    monkeypatch.setattr(train_planner, "train_trace", tracer)
    monkeypatch.setattr(train_planner, "cached_train_trace", _nothing_cached)
    return tracer


def _rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, _ = run_cli(capsys, "fit", "--json", *args)
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_one_model_is_traced_and_answered(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    (row,) = _rows(capsys, "--gpu", "t4", "--workload", "qlora", "-m", MODEL.name)
    assert fake_tracer.shapes and {s.method for s in fake_tracer.shapes} == {"qlora"}
    assert {s.dtype for s in fake_tracer.shapes} == {"bfloat16"}
    assert row["workload"] == "qlora" and row["fits"] is True
    assert row["binding"] in (*TRAINING_TERMS, "positions")
    assert row["kv_cache_bytes"] == 0 and row["max_batch"] >= 1 and row["max_context"] >= 1
    assert (row["quant"], row["double_quant"]) == ("nf4", True)  # qlora's base


def test_the_optimizer_and_checkpointing_flags_reach_the_traces(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    _rows(capsys, "--gpu", "t4", "--workload", "full", "-m", MODEL.name,
          "--optim", "sgd", "--grad-checkpointing")  # fmt: skip
    assert {(s.optim, s.grad_checkpointing) for s in fake_tracer.shapes} == {("sgd", True)}


def test_several_models_list_the_untraced_and_trace_nothing(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    code, out, err = run_cli(
        capsys, "fit", "--gpu", "rtx-4090", "--workload", "lora", "--filter", "gemma-2",
        "--context", "2048", "--json", "--batch", "4", "--optim", "sgd",
    )  # fmt: skip
    assert code == 0 and json.loads(out) == [] and not fake_tracer.shapes
    lines = err.strip().splitlines()
    gemmas = [e.name for e in CATALOGUE.values() if e.matches("gemma-2")]
    assert len(lines) == len(gemmas) > 1
    assert all(line.startswith("not traced yet: ") for line in lines)
    said = f"vramtui fit --workload lora --context 2048 --batch 4 --optim sgd -m {gemmas[0]}"
    assert said in lines[0]


def test_trace_allows_tracing_several_models(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    rows = _rows(capsys, "--gpu", "rtx-4090", "--workload", "lora", "--filter", "pythia",
                 "--trace")  # fmt: skip
    assert len(rows) == len([e for e in CATALOGUE.values() if e.matches("pythia")]) > 1
    assert fake_tracer.shapes


def test_check_exits_0_at_the_largest_batch_and_3_one_above(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    flags = ("--gpu", "t4", "--workload", "lora", "-m", MODEL.name, "--context", "1024")
    (row,) = _rows(capsys, *flags)
    most = row["max_batch"]
    assert most >= 1
    code, out, _ = run_cli(capsys, "fit", *flags, "--check", "--batch", str(most))
    assert code == 0 and out.startswith("fits: ")
    code, out, _ = run_cli(capsys, "fit", *flags, "--check", "--batch", str(most + 1))
    assert code == 3 and out.startswith("does not fit: ") and len(out.strip().splitlines()) == 1


def test_a_quant_with_a_training_workload_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], fake_tracer: Counting
) -> None:
    code, out, err = run_cli(capsys, "fit", "--gpu", "t4", "--workload", "lora", "--quant", "int8")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert "takes no --quant" in err and not fake_tracer.shapes


def _tiny_llama() -> tuple[Entry, Tracer]:
    """A tiny Llama and the meta-device tracer run in this process."""
    pytest.importorskip("peft", reason="the .[train] extra is not installed")
    from helpers import TINY_LLAMA

    from vramtui.predict.training.step_tracer import Request, trace
    from vramtui.predict.training.trace import parse

    def traced(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace:
        return parse(trace(Request(config=config, **vars(shape))))

    return Entry("tiny-llama", "tiny/llama", "Llama", 0, dict(TINY_LLAMA)), traced


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("workload", ["full", "lora", "qlora"])
def test_a_real_models_interpolated_need_is_its_traced_one(workload: str, attn: str) -> None:
    """Sequences and micro-batches off the grid (a batch of one below it) come out of
    the interpolation as their own traces would have them, to the byte."""
    tiny, traced = _tiny_llama()
    asked = Setting(workload=workload, prompt_tokens=8, tokens=120, batch=2, attn=attn,
                    dtype="bfloat16")  # fmt: skip
    planner = TrainPlanner(tracer=traced, cached=_nothing_cached)
    planner.peak(tiny, asked, exact=False)
    for setting in (asked.with_context(100), asked.with_context(300), asked.with_batch(1),
                    asked.with_batch(5)):  # fmt: skip
        guessed = planner.peak(tiny, setting, exact=False)
        assert guessed.basis == "interpolated"
        assert guessed.need_bytes == planner.peak(tiny, setting).need_bytes


@pytest.mark.slow
def test_a_real_traced_model_answers_by_its_own_figures() -> None:
    """The meta-device tracer (in this process) on a tiny Llama: the largest sequence
    fits and one more token does not, by the planner's traced figures."""
    tiny, traced = _tiny_llama()
    asked = Setting(workload="lora", prompt_tokens=8, tokens=56, batch=2, attn="eager",
                    dtype="bfloat16")  # fmt: skip
    planner = TrainPlanner(tracer=traced, cached=_nothing_cached)

    def need(context: int) -> int:
        return planner.peak(tiny, asked.with_context(context)).need_bytes

    budget = Budget((need(64) + need(200)) // 2, 0, 0)
    most = Search(planner, budget).max_context(tiny, asked)
    assert 64 <= most < 200
    assert need(most) <= budget.usable_bytes < need(most + 1)


def test_rows_from_cached_traces_say_they_are_interpolated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over several models, a model whose grid is cached answers from it, marked ~."""
    monkeypatch.setattr(train_planner, "cached_train_trace", synthetic)
    code, out, _ = run_cli(capsys, "fit", "--gpu", "t4", "--workload", "lora", "--filter",
                           "pythia", "--batch", "2")  # fmt: skip
    assert code == 0 and "not traced yet" not in out
    assert "~ (interpolated)" in out and "fragmentation model" not in out


def test_rows_without_a_cached_trace_are_approximate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text: a model with cached traces answers from them; the others (GPT-NeoX, a
    family written out) from their config's numbers, marked approximate; none listed."""

    def only_410m(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace | None:
        return synthetic(name, config, shape) if name == MODEL.name else None

    monkeypatch.setattr(train_planner, "cached_train_trace", only_410m)
    monkeypatch.setattr(train_planner, "train_trace", Counting())
    code, out, _ = run_cli(capsys, "fit", "--gpu", "t4", "--workload", "full", "--filter",
                           "pythia")  # fmt: skip
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("pythia")}
    assert code == 0 and "not traced yet" not in out
    assert rows["pythia-1b"].endswith("approximate") and "`vramtui fit --trace`" in out
    assert not rows[MODEL.name].endswith("approximate")


def test_a_trace_not_cached_is_none_without_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    from vramtui.predict.tracing import traces
    from vramtui.predict.training.trace import cached_train_trace

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tracer child was started")

    monkeypatch.setattr(traces, "_run_child", no_child)
    shape = TrainShape(method="lora", seq=77, batch=3)
    assert cached_train_trace("not-cached", {"model_type": "llama", "seed": 77}, shape) is None


def test_a_model_that_cannot_be_traced_is_listed_not_fatal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trace over several models: one whose step cannot be traced is listed with why;
    the others are answered. With --model it is the one-line error, exit 2."""
    from vramtui.predict.tracing.traces import TraceError

    def fails_for_1b(name: str, config: dict[str, Any], shape: TrainShape) -> TrainTrace:
        if name == "pythia-1b":
            raise TraceError("cannot trace a training step of pythia-1b: no meta kernel")
        return synthetic(name, config, shape)

    monkeypatch.setattr(train_planner, "train_trace", fails_for_1b)
    monkeypatch.setattr(train_planner, "cached_train_trace", _nothing_cached)
    flags = ("fit", "--gpu", "t4", "--workload", "lora")
    code, out, _ = run_cli(capsys, *flags, "--filter", "pythia", "--trace")
    assert code == 0 and MODEL.name in out
    assert "cannot trace: pythia-1b: cannot trace a training step of pythia-1b" in out
    code, out, err = run_cli(capsys, *flags, "-m", "pythia-1b")
    assert code == 2 and not out and "no meta kernel" in err
