"""--cap SIZE: a smaller GPU emulated on a larger one (vramtui.runspec.cap).

Everything here runs on the CPU: the flag's parsing and refusals through the CLI, the
spec, the engine's fraction and its call into torch (with torch's CUDA functions
stood in for), the summary and JSON of a capped run, and the estimate against a cap.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tests.helpers import H100, TINY_CONFIG, WITH_GPU, resolved, run_cli, tiny_spec
from vramtui.errors import UsageError
from vramtui.measure import device_inventory, nvml
from vramtui.measure import events as ev
from vramtui.measure.engine import device as engine_device
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session
from vramtui.measure.summary_format import typed_summary
from vramtui.predict.estimator import estimate, estimate_run
from vramtui.predict.fit_forecast import cap_check
from vramtui.report.export import json_text
from vramtui.report.summary_text import summary_text
from vramtui.runspec import DeviceList, RunSpec, resolve
from vramtui.runspec.cap import (
    CAP_COVERS,
    CAP_NEEDS_CUDA,
    cap_facts,
    check_cap,
    memory_fraction,
    parse_cap,
)
from vramtui.sweep import grid as bench
from vramtui.tui.prediction import start_prediction

GiB = 1024**3


@pytest.fixture(autouse=True)
def one_h100(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI sees an H100 and the CPU (nothing is asked of NVML)."""
    monkeypatch.setattr(device_inventory, "available", lambda: WITH_GPU)
    monkeypatch.setattr(nvml, "gpus", lambda: [])


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("vramtui:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- the size --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * GiB),
        ("24GB", 24 * 10**9),
        ("12G", 12 * 10**9),
        ("16000MiB", 16000 * 1024**2),
        ("1.5GiB", 3 * GiB // 2),
        ("3221225472", 3 * GiB),
    ],
)
def test_a_cap_parses_as_every_size_does(text: str, expected: int) -> None:
    assert parse_cap(text) == expected


@pytest.mark.parametrize("text", ["abc", "12 parsecs", "-3GiB", "0", "GiB", ""])
def test_a_bad_cap_is_a_usage_error_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="^--cap: ") as caught:
        parse_cap(text)
    assert caught.value.field == "cap_bytes"


# --- refused before anything runs ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--device", "cpu", "--cap", "1GiB"], CAP_NEEDS_CUDA),
        (["--device", "cuda:0", "--cap", "80 gigs"], "--cap: not a size: '80 gigs'"),
        (["--device", "cuda:0", "--cap", "0"], "--cap: size must be positive"),
        (["--device", "cuda:0", "--cap", "80GiB"], "is more than cuda:0's 79.65 GiB"),
        (["--device-map", "auto", "--cap", "12GiB"], "--cap limits one GPU"),
    ],
)
@pytest.mark.parametrize("command", ["run", "bench"])
def test_a_cap_the_run_cannot_have_is_one_line_and_exit_2(
    command: str, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = "--config" if command == "run" else "--models"
    model = str(TINY_CONFIG) if command == "run" else "opt-125m"
    code, out, err = run_cli(capsys, command, flag, model, "-n", "3", "-q", *args)
    assert code == 2
    assert needle in one_line_error(err)
    assert out == ""  # no table, no summary: nothing ran


def test_a_cap_on_the_cpu_is_refused_as_the_estimate_is_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(capsys, "estimate", "-m", "opt-1.3b", "--device", "cpu", "--cap", "2G")
    assert code == 2
    assert CAP_NEEDS_CUDA in one_line_error(err)


def test_a_cap_above_the_gpu_memory_given_to_the_estimate_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(
        capsys, "estimate", "-m", "opt-1.3b", "--gpu-memory", "24GB", "--cap", "24GiB"
    )
    assert code == 2
    assert "--cap 24.00 GiB (25.77 GB) is more than cuda:0's" in one_line_error(err)


# --- the spec ---------------------------------------------------------------------------


def test_the_cap_travels_in_the_spec_and_back() -> None:
    spec = RunSpec(model="opt-1.3b", device="cuda:0", cap_bytes=12 * GiB)
    back = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.cap_bytes == 12 * GiB
    older = {k: v for k, v in spec.to_dict().items() if k != "cap_bytes"}
    assert RunSpec.from_dict(older).cap_bytes is None  # a spec saved before --cap


def test_resolve_keeps_a_cap_that_fits_the_device() -> None:
    run = resolve(RunSpec(model="opt-1.3b", device="cuda:0", cap_bytes=24 * GiB), WITH_GPU)
    assert run.spec.cap_bytes == 24 * GiB and run.backend == "cuda"
    full = resolve(replace(run.spec, cap_bytes=H100.total), WITH_GPU)  # the whole card
    assert full.spec.cap_bytes == H100.total


def test_a_gpu_nvml_cannot_count_is_capped_and_checked_by_the_engine() -> None:
    uncounted = DeviceList(WITH_GPU.choices[1:], gpus_counted=False)
    run = resolve(RunSpec(model="opt-1.3b", device="cuda:1", cap_bytes=500 * GiB), uncounted)
    assert run.spec.cap_bytes == 500 * GiB  # no total known here: the engine refuses it


def test_check_cap_refuses_a_non_positive_cap_from_a_spec_file() -> None:
    with pytest.raises(UsageError, match="must be positive"):
        check_cap(-1, "cuda", H100.total, device="cuda:0")


# --- the engine's fraction and its call into torch --------------------------------------


def test_the_fraction_is_the_cap_over_the_device_total() -> None:
    assert memory_fraction(12 * GiB, 80 * GiB) == pytest.approx(0.15)
    assert memory_fraction(H100.total, H100.total) == 1.0
    with pytest.raises(UsageError, match="is more than cuda:0's"):
        memory_fraction(81 * GiB, 80 * GiB, device="cuda:0")
    with pytest.raises(UsageError, match="must be positive"):
        memory_fraction(0, 80 * GiB)


def test_the_engine_sets_the_fraction_on_the_run_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[tuple[float, Any]] = []

    class Properties:
        total_memory = 80 * GiB

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties())
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d))
    )
    device = torch.device("cuda:1")
    facts = engine_device.apply_cap(device, 20 * GiB)
    assert calls == [(0.25, device)]
    assert facts == cap_facts(20 * GiB, 0.25)
    assert facts["memory_fraction"] == "0.250000" and facts["cap_bytes"] == str(20 * GiB)
    with pytest.raises(UsageError, match="is more than cuda:1's"):
        engine_device.apply_cap(device, 81 * GiB)
    assert len(calls) == 1  # a refused cap sets nothing


def test_the_engine_sets_nothing_without_a_cap_and_refuses_one_off_cuda() -> None:
    import torch

    assert engine_device.apply_cap(torch.device("cpu"), None) == {}
    with pytest.raises(UsageError, match=CAP_NEEDS_CUDA):
        engine_device.apply_cap(torch.device("cpu"), GiB)


@pytest.mark.engine
@pytest.mark.slow
def test_an_engine_given_a_cap_on_the_cpu_fails_as_bad_input() -> None:
    """A spec that reached the engine with a cap off CUDA (resolve() refuses it first):
    a usage failure before the model is built, not a stub."""
    run = resolved(tiny_spec(tokens=2))
    session = Recorder.for_run(replace(run, spec=replace(run.spec, cap_bytes=GiB))).run()
    view = session.snapshot()
    assert view.failure is not None and view.failure.kind == "usage"
    assert CAP_NEEDS_CUDA in view.failure.message
    assert view.loaded is None  # nothing was built


# --- what a capped run says ---------------------------------------------------------------


def capped_session(cap: int = 12 * GiB) -> Session:
    """A session that saw a capped engine's Hello (the engine's facts as it sends them)."""
    spec = RunSpec(model="opt-1.3b", device="cuda:0", tokens=50, cap_bytes=cap)
    session = Session(spec)
    facts = cap_facts(cap, memory_fraction(cap, H100.total))
    versions = {"torch": "2.11.0", **facts}
    hello = ev.Hello(4321, "cuda:0", "cuda", H100.label, None, H100.total, "torch.cuda", versions)
    session.apply(hello)
    return session


def test_the_summary_says_the_run_was_capped_and_what_the_cap_does_not_hold() -> None:
    text = summary_text(typed_summary(capped_session().snapshot()))
    row = next(line for line in text.splitlines() if line.startswith("cap "))
    assert "12.00 GiB (12.88 GB)" in row
    assert "fraction 0.150664 of 85.52 GB" in row
    assert "the CUDA context is not under the cap" in row


def test_an_uncapped_summary_has_no_cap_row() -> None:
    session = Session(RunSpec(model="opt-1.3b", device="cuda:0"))
    assert "\ncap " not in summary_text(typed_summary(session.snapshot()))


def test_the_json_says_the_cap_the_fraction_and_what_the_cap_holds() -> None:
    data = json.loads(json_text(capped_session().snapshot()))
    assert data["spec"]["cap_bytes"] == 12 * GiB
    assert data["environment"]["cap_bytes"] == str(12 * GiB)
    assert data["environment"]["memory_fraction"] == "0.150664"
    assert data["environment"]["cap_covers"] == CAP_COVERS
    assert "CUDA context is not under the cap" in CAP_COVERS


# --- the estimate against a cap -----------------------------------------------------------


def opt_1_3b_50() -> Any:
    run = resolve(RunSpec(model="opt-1.3b", tokens=50, device="cuda:0"), WITH_GPU)
    est = estimate_run(run)
    assert est is not None
    return est


def test_the_estimate_holds_the_peak_reserved_against_the_cap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    est = opt_1_3b_50()
    reserved = est.required_bytes - est.context_bytes
    code, out, _ = run_cli(capsys, "estimate", "-m", "opt-1.3b", "-n", "50", "--cap", "3GiB")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("under --cap"))
    assert line.startswith("under --cap 3.00 GiB (3.22 GB): fits: peak reserved")
    assert "CUDA context" in line and "outside the cap" in line
    code, out, _ = run_cli(capsys, "estimate", "-m", "opt-1.3b", "-n", "50", "--cap", "2GiB")
    assert code == 0
    assert "under --cap 2.00 GiB (2.15 GB): won't fit" in out
    assert "not even the weights fit" in out
    code, out, _ = run_cli(
        capsys, "estimate", "-m", "opt-1.3b", "-n", "50", "--cap", "3GiB", "--json"
    )
    data = json.loads(out)
    assert data["cap_bytes"] == 3 * GiB and data["fits_under_cap"] is True
    assert data["cap_need_bytes"] == reserved
    assert data["cap_compared"].startswith("peak_reserved_bytes")


def test_under_a_tight_cap_the_most_tokens_that_fit_do_and_one_more_does_not() -> None:
    est = opt_1_3b_50()
    long = estimate(est.model, tokens=2000, **{**est.run_kwargs(), "batch": 8})
    cap = (long.weights_bytes + long.required_bytes - long.context_bytes) // 2
    check = cap_check(long, cap)
    assert not check.fits and check.weights_fit and check.most_tokens
    kwargs = long.run_kwargs()

    def reserved(n: int) -> int:
        e = estimate(long.model, tokens=n, **kwargs)
        return e.required_bytes - e.context_bytes

    assert reserved(check.most_tokens) <= cap < reserved(check.most_tokens + 1)


def test_the_start_screen_holds_the_prediction_against_the_cap() -> None:
    run = resolve(
        RunSpec(model="opt-1.3b", tokens=50, device="cuda:0", cap_bytes=2 * GiB), WITH_GPU
    )
    prediction = start_prediction(estimate_run(run), run)
    assert prediction.fits is False
    assert "under --cap 2.00 GiB (2.15 GB): won't fit" in prediction.text
    roomy = replace(run, spec=replace(run.spec, cap_bytes=3 * GiB))
    prediction = start_prediction(estimate_run(roomy), roomy)
    assert prediction.fits is True and "under --cap 3.00 GiB (3.22 GB): fits" in prediction.text


def test_the_bench_command_line_repeats_the_cap() -> None:
    axes = bench.Axes(
        models=[bench.ModelRef("opt-125m")],
        tokens=[5],
        base=RunSpec(device="cuda:0", cap_bytes=12 * GiB),
    )
    assert f"--cap {12 * GiB}" in axes.command()
    cells = axes.cells(WITH_GPU)
    assert all(cell.run.spec.cap_bytes == 12 * GiB for cell in cells)


def test_a_comparison_names_the_cap_that_sets_two_runs_apart() -> None:
    from vramtui.analysis.run_comparison import differences

    views = [capped_session(12 * GiB).snapshot(), capped_session(16 * GiB).snapshot()]
    assert differences(views) == ["cap_bytes"]


def test_an_out_of_memory_under_a_cap_says_the_cap() -> None:
    from vramtui.measure.engine.engine_main import oom_message, requested_bytes

    text = (
        "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
        "79.19 GiB of which 76.40 GiB is free. Including non-PyTorch memory, this process "
        "has 2.70 GiB memory in use."
    )
    capped = oom_message(text, 2 * GiB)
    assert capped.endswith("[under --cap 2.00 GiB (2.15 GB): the allocator may reserve no more]")
    assert capped.startswith("CUDA out of memory. Tried to allocate 20.00 MiB.")
    assert requested_bytes(capped) == 20 * 1024**2
    assert "under --cap" not in oom_message(text, None)


def _grown(session: Session) -> Session:
    """Five decode steps, 1 MiB a token, 3 GiB allocated at the start."""
    for token in range(1, 6):
        allocated = 3 * GiB + token * 1024**2
        session.apply(
            ev.Sample(token, float(token), "decode", allocated, allocated, allocated, None)
        )
    return session


def test_a_live_run_under_a_cap_runs_out_at_the_cap_not_the_card() -> None:
    from vramtui.analysis.live_forecast import forecast_oom, headroom

    capped = _grown(capped_session(4 * GiB)).snapshot()
    uncapped = _grown(capped_session(H100.total)).snapshot()
    assert headroom(capped) == 4 * GiB - (3 * GiB + 5 * 1024**2)
    assert headroom(uncapped) == H100.total - (3 * GiB + 5 * 1024**2)
    forecast = forecast_oom(capped)
    assert forecast is not None and forecast.token == 5 + 1019 + 1  # 1019 MiB left, 1 a token
    assert forecast.fits  # 50 tokens are asked for
