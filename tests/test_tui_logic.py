"""The app's logic without a terminal: plot data, words on screen, file names, CLI dispatch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from helpers import CPU_ONLY, WITH_GPU

from vramtui import cli
from vramtui.models.catalogue import lookup
from vramtui.report.sessions import autosave, free_stem, session_stem, sessions_dir
from vramtui.runspec import DeviceChoice, RunSpec, resolve
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.device_list import device_options, initial_device_options
from vramtui.tui.form import FormValues, model_facts, read_form
from vramtui.tui.plotdata import (
    build_plot_data,
    downsample,
    nice_ticks,
    pick_unit,
    tick_labels,
)
from vramtui.tui.screen_text import duration, series_rows, short_bytes, status_text
from vramtui.tui.storage import check_targets, export_targets


def replay(tokens: int = 2000, **kwargs: object) -> ReplayRecorder:
    spec = RunSpec(model="opt-1.3b", tokens=tokens, device="cuda:0")
    return ReplayRecorder(spec, synthetic_run("opt-1.3b", tokens, **kwargs))  # type: ignore[arg-type]


# ---- plot data ---------------------------------------------------------------------------
def test_downsample_is_bounded_and_keeps_the_peak_where_it_happened() -> None:
    points = [(i, 1000 + i) for i in range(5000)]
    points[3217] = (3217, 10**9)
    xs, ys = downsample(points, 100)
    assert len(xs) <= 101
    assert max(ys) == 10**9 and xs[ys.index(10**9)] == 3217
    assert xs[-1] == 4999 and ys[-1] == 1000 + 4999  # the line ends where the run is
    assert xs == sorted(xs)


def test_downsample_leaves_short_series_alone() -> None:
    points = [(0, 5), (1, 7), (2, 6)]
    assert downsample(points, 100) == ([0, 1, 2], [5, 7, 6])
    assert downsample([], 100) == ([], [])


@pytest.mark.slow
def test_plot_data_of_2000_tokens_is_cut_to_the_plot_width() -> None:
    session = replay().session.snapshot()
    data = build_plot_data(session, axis="tokens", buckets=160)
    assert {line.name for line in data.lines} == {
        "allocated",
        "step_peak",
        "reserved",
        "nvml_process",
    }
    assert all(len(line.xs) <= 161 for line in data.lines)
    assert data.unit == "GB" and data.x_max == 2000
    nvml = next(line for line in data.lines if line.name == "nvml_process")
    assert max(nvml.ys) * 1e9 == pytest.approx(session.peaks["nvml_process"].value)
    # 85 GB of device against ~3.7 GB of data: the reference line is out of view.
    assert data.reference is None
    assert 0 < data.y_min < 3.0 < data.y_max


def test_device_total_is_drawn_only_when_in_view() -> None:
    from dataclasses import replace

    from vramtui.measure import events as ev
    from vramtui.measure.session import NvmlSample

    items = [
        replace(item, total_memory=5_000_000_000) if isinstance(item, ev.Hello) else item
        for item in synthetic_run("opt-1.3b", 50)
        if not isinstance(item, NvmlSample)  # the NVML total would win over the engine's
    ]
    spec = RunSpec(model="opt-1.3b", tokens=50, device="cuda:0")
    data = build_plot_data(
        ReplayRecorder(spec, items).session.snapshot(), axis="tokens", buckets=80
    )
    assert data.reference == pytest.approx(5.0)
    assert data.y_max > 5.0


def test_seconds_axis_has_phase_marks_and_time_series() -> None:
    session = replay(tokens=60).session.snapshot()
    data = build_plot_data(session, axis="seconds", buckets=80)
    assert [name for _, name in data.phase_marks] == ["load", "prefill", "decode"]
    assert data.x_max == pytest.approx(session.elapsed())


def test_empty_session_gives_an_empty_plot() -> None:
    spec = RunSpec(model="opt-125m", tokens=10)
    data = build_plot_data(ReplayRecorder(spec, []).session.snapshot(), buckets=50)
    assert data.empty and data.y_max == 1.0


def test_ticks_are_round_numbers() -> None:
    assert nice_ticks(0, 2000, 4) == [0, 500, 1000, 1500, 2000]
    assert tick_labels(nice_ticks(2.5, 3.77, 6), " GB") == [
        "2.50 GB",
        "2.75 GB",
        "3.00 GB",
        "3.25 GB",
        "3.50 GB",
        "3.75 GB",
    ]
    assert tick_labels([0.0, 0.1, 0.2]) == ["0.0", "0.1", "0.2"]
    assert pick_unit(3.5e9) == ("GB", 1e9) and pick_unit(360e6) == ("MB", 1e6)


# ---- words on screen ----------------------------------------------------------------------
def test_status_line_writes_token_i_of_n_exactly() -> None:
    recorder = replay(tokens=2000, upto=37)
    line = status_text(recorder.session.snapshot(), now=3.0)
    assert "token 37/2000" in line
    assert line.startswith("decode │ ")
    assert "30.0 tok/s" in line and "elapsed 0:03" in line and "ETA 1:05" in line


def test_status_line_after_the_end() -> None:
    session = replay(tokens=40).session.snapshot()
    assert status_text(session, now=None).startswith("completed │ token 40/40")
    assert "ETA done" in status_text(session, now=None)
    oom = replay(tokens=40, upto=20, outcome="oom").session.snapshot()
    assert status_text(oom, now=None).startswith("failed (oom) │ token 20/40")


def test_series_rows_have_current_and_peak_and_cpu_labels() -> None:
    spec = RunSpec(model="opt-125m", tokens=20, device="cpu")
    session = ReplayRecorder(spec, synthetic_run("opt-125m", 20, backend="cpu")).session.snapshot()
    rows = series_rows(session)
    assert [r.label for r in rows] == ["process RSS", "step peak RSS"]
    assert all(r.peak != "–" for r in rows)


def test_short_figures() -> None:
    assert duration(65) == "1:05" and duration(3723) == "1:02:03" and duration(None) == "–"
    assert short_bytes(360_430_000) == "360 MB"
    assert short_bytes(2_780_000_000) == "2.78 GB"
    assert short_bytes(999_999) == "1.00 MB"


def form(**changes: str) -> FormValues:
    values = dict(
        model="opt-125m",
        source="architecture",
        path="",
        tokens="200",
        prompt_tokens="8",
        batch="1",
        dtype="auto",
        attn="sdpa",
        device="cpu",
    )
    values.update(changes)
    return FormValues(**values)


def test_each_bad_field_is_named_under_itself_several_at_once() -> None:
    result = read_form(form(tokens="0", batch="", prompt_tokens="-3"), RunSpec(), CPU_ONLY)
    assert result.run is None
    assert set(result.errors) == {"tokens", "batch", "prompt_tokens"}
    assert result.errors["tokens"] == "Tokens must be positive, got 0"
    assert result.errors["batch"] == "Batch must be a whole number, got ''"
    assert result.errors["prompt_tokens"] == "Prompt must be positive, got -3"


def test_a_number_with_a_dot_is_refused_not_read_without_it() -> None:
    result = read_form(form(tokens="1.5"), RunSpec(), CPU_ONLY)
    assert result.run is None
    assert result.errors == {"tokens": "Tokens must be a whole number, got '1.5'"}


def test_every_error_is_shown_at_once_those_resolve_finds_too() -> None:
    result = read_form(form(tokens="3000", batch="x", device="cuda:3"), RunSpec(), CPU_ONLY)
    assert result.run is None
    assert set(result.errors) == {"tokens", "batch", "device"}
    assert "2048 positions" in result.errors["tokens"]
    assert "no device 'cuda:3'" in result.errors["device"]
    # a number that does not read still lets the others be checked
    result = read_form(form(tokens="ten", device="cuda:3"), RunSpec(), CPU_ONLY)
    assert set(result.errors) == {"tokens", "device"}


def test_resolve_errors_are_named_as_the_form_labels_them() -> None:
    from vramtui.tui.form import labelled

    assert labelled("--prompt-tokens must be positive, got 0") == "Prompt must be positive, got 0"
    assert labelled("unknown cache 'x'; see --cache") == "unknown cache 'x'; see KV cache"
    assert labelled("--max-memory needs --device-map") == "--max-memory needs --device-map"


def test_errors_that_need_the_whole_spec_carry_their_field() -> None:
    past = read_form(form(tokens="3000"), RunSpec(), CPU_ONLY)
    assert list(past.errors) == ["tokens"] and "2048 positions" in past.errors["tokens"]
    absent = read_form(form(device="cuda:3"), RunSpec(), CPU_ONLY)
    assert list(absent.errors) == ["device"] and "no device 'cuda:3'" in absent.errors["device"]
    missing = read_form(form(source="config", path="nope.json"), RunSpec(), CPU_ONLY)
    assert list(missing.errors) == ["path"]
    no_path = read_form(form(source="checkpoint"), RunSpec(), CPU_ONLY)
    assert list(no_path.errors) == ["path"]


def test_a_fixed_form_resolves_with_no_errors_left() -> None:
    result = read_form(form(tokens="20"), RunSpec(seed=7), CPU_ONLY)
    assert result.errors == {} and result.run is not None
    assert result.run.spec.seed == 7  # flags the form does not show keep their values
    assert (result.run.backend, result.run.dtype) == ("cpu", "float32")


def test_model_facts_follow_dtype_and_batch() -> None:
    info = lookup("opt-1.3b")
    assert "KV 196.6 kB/token (float16, batch 1)" in model_facts(info, "float16")
    assert "KV 786.4 kB/token (float32, batch 2)" in model_facts(info, "float32", 2)
    assert model_facts(None, "float16") == ""


def test_model_facts_show_grouped_query_heads() -> None:
    """Llama 3.1 8B: 8 KV heads of 128 for 32 query heads: 128 KiB a token in fp16."""
    facts = model_facts(lookup("llama-3.1-8b"), "float16")
    assert "32 layers, hidden 4096, 32 heads (8 KV)" in facts
    assert "KV 131.1 kB/token" in facts and "weights 16.06 GB" in facts


def test_model_facts_on_the_cpu_are_float32_as_the_run_will_be() -> None:
    run = read_form(form(), RunSpec(), CPU_ONLY).run
    assert run is not None
    facts = model_facts(lookup(run.spec.model), run.dtype)
    assert "weights 500.96 MB" in facts and "float32" in facts


def test_device_options_list_gpus_with_free_memory_and_keep_the_wanted_one() -> None:
    gpu = DeviceChoice("cuda:0", "NVIDIA H100", 80_000_000_000, 79_000_000_000)
    cpu = DeviceChoice("cpu", "AMD EPYC", 24_000_000_000, 20_000_000_000)
    options = device_options([gpu, cpu], "cuda:1")
    assert [o.id for o in options] == ["auto", "cuda:1", "cuda:0", "cpu"]
    assert options[2].label == "cuda:0  H100 · 79.0 GB free"
    assert options[3].label == "cpu  AMD EPYC · 20.0 GB available"
    assert "not found" in options[1].label
    assert [o.id for o in initial_device_options("auto")] == ["auto", "cpu"]


# ---- files ----------------------------------------------------------------------------------
def test_sessions_dir_follows_xdg_and_macos(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert sessions_dir({}, "linux", home) == home / ".local/share/vramtui/sessions"
    xdg = str(tmp_path / "xdg")
    assert sessions_dir({"XDG_DATA_HOME": xdg}, "linux", home) == Path(xdg) / "vramtui/sessions"
    assert sessions_dir({"XDG_DATA_HOME": "relative"}, "linux", home) == (
        home / ".local/share/vramtui/sessions"
    )
    mac = sessions_dir({}, "darwin", home)
    assert mac == home / "Library/Application Support/vramtui/sessions"


def test_autosave_never_overwrites(tmp_path: Path) -> None:
    session = replay(tokens=10).session.snapshot()
    when = datetime(2026, 1, 2, 3, 4, 5)
    first = autosave(session, tmp_path / "s", when)
    second = autosave(session, tmp_path / "s", when)
    assert first.csv.name == "20260102-030405-opt-1.3b-cuda0.csv"
    assert second.csv.name == "20260102-030405-opt-1.3b-cuda0-2.csv"
    assert first.json.read_text() and second.json.exists()
    assert free_stem(tmp_path / "s", "other", (".csv",)) == "other"
    assert session_stem(None, when) == "vramtui-20260102-030405"


def test_export_targets_and_checks(tmp_path: Path) -> None:
    assert export_targets(str(tmp_path / "run")) == [tmp_path / "run.csv", tmp_path / "run.json"]
    assert export_targets(str(tmp_path / "a.CSV")) == [tmp_path / "a.CSV"]
    problem, existing = check_targets([tmp_path / "missing" / "x.csv"])
    assert problem and "does not exist" in problem
    (tmp_path / "x.json").write_text("{}")
    assert check_targets([tmp_path / "x.json"]) == (None, [tmp_path / "x.json"])
    assert check_targets([tmp_path])[0] is not None


# ---- command line -------------------------------------------------------------------------
def test_the_app_is_the_default_command() -> None:
    assert cli.is_app([]) and cli.is_app(["--model", "opt-1.3b"]) and not cli.is_app(["run"])


def test_app_flags_prefill_the_spec(tmp_path: Path) -> None:
    from vramtui.commands import app_command as app
    from vramtui.commands.common import build_spec

    args = app.build_parser().parse_args(
        [
            "--model",
            "opt-1.3b",
            "--tokens",
            "2000",
            "--device",
            "cuda:0",
            "--start",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    spec = build_spec(args)
    assert (spec.model, spec.tokens, spec.device) == ("opt-1.3b", 2000, "cuda:0")
    assert args.start and app.make_out(args.out).is_dir()


def test_unknown_command_and_bad_out_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("")
    assert cli.main(["--out", str(afile)]) == 2
    assert "--out must be a folder" in capsys.readouterr().err


def test_headless_commands_never_import_textual() -> None:
    code = (
        "import sys; from vramtui import cli; cli.build_parser(); "
        "from vramtui.commands import app_command as app; app.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the estimator in the app -----------------------------------------------------------------
def test_start_prediction_says_whether_it_fits_the_device() -> None:
    from vramtui.predict.estimator import estimate_run
    from vramtui.tui.prediction import start_prediction

    def predict(spec: RunSpec, devices=WITH_GPU):  # type: ignore[no-untyped-def]
        run = resolve(spec, devices)
        return start_prediction(estimate_run(run), run)

    small = predict(RunSpec(model="opt-1.3b", tokens=2000, device="cuda:0"))
    assert small.fits is True and "predicted peak" in small.text and "fits: needs" in small.text
    assert "expandable" not in small.text
    b8 = predict(RunSpec(model="opt-1.3b", tokens=2000, batch=8, device="cuda:0"))
    assert "expandable_segments:True avoids it" in b8.text
    big = predict(RunSpec(model="opt-66b", tokens=2000, device="auto"))
    assert big.fits is False and "won't fit" in big.text
    unknown = start_prediction(None, resolve(RunSpec(), CPU_ONLY))
    assert unknown.fits is None and "no prediction" in unknown.text


def test_a_cpu_run_is_checked_against_the_ram_available() -> None:
    from vramtui.predict.estimator import estimate_run
    from vramtui.tui.prediction import start_prediction

    small = resolve(RunSpec(model="opt-125m", device="cpu"), CPU_ONLY)
    fits = start_prediction(estimate_run(small), small)
    assert fits.fits is True and "RSS" in fits.text and "RAM available" in fits.text
    huge = resolve(RunSpec(model="opt-66b", device="cpu"), CPU_ONLY)
    too_big = start_prediction(estimate_run(huge), huge)
    assert too_big.fits is False and "won't fit" in too_big.text
    assert "20.0 GB RAM available" in too_big.text


def test_predicted_curve_spans_the_budget_from_the_first_token() -> None:
    from vramtui.analysis.breakdown import estimate_for_session

    session = replay(tokens=2000, upto=10).session.snapshot()
    est = estimate_for_session(session)
    assert est is not None
    data = build_plot_data(session, buckets=100, predicted=est.curve(100))
    assert data.predicted is not None and data.predicted.xs[-1] == 1999
    top = max(data.predicted.ys)
    assert data.y_max >= top


def test_forecast_text() -> None:
    from vramtui.predict.fit_forecast import OomForecast
    from vramtui.tui.prediction import forecast_text

    assert forecast_text(None, 100) == ("", False)  # nothing to say before decode steps
    assert forecast_text(None, 100, tokens_done=50)[0] == "no OOM forecast: device size unknown"
    text, warn = forecast_text(OomForecast(1734, 196_608.0, 10**9, False), 2000)
    assert warn and "OOM expected at token 1734 of 2000" in text and "+197 kB/token" in text
    assert forecast_text(OomForecast(None, 1.0, 10**9, True), 2000)[1] is False


def test_breakdown_rows_and_bar() -> None:
    from vramtui.analysis.breakdown import measured_breakdown
    from vramtui.tui.prediction import breakdown_rows
    from vramtui.tui.widgets.breakdown_panel import stacked_bar

    breakdown = measured_breakdown(replay(tokens=100, upto=50).session.snapshot())
    rows = breakdown_rows(breakdown)
    assert [label for label, _ in rows][:2] == ["weights", "KV cache"]
    assert sum(value for _, value in rows) == breakdown.total_bytes
    bar = stacked_bar(rows, 30, no_color=True)
    assert len(bar.plain) == 30 and bar.plain.startswith("W") and "K" in bar.plain


def test_a_program_summary_counts_its_tokens_without_a_budget() -> None:
    from vramtui.measure.summary_record import Summary
    from vramtui.tui.screens.summary_screen import heading

    program = Summary(status="completed", model="train.py", tokens_generated=50)
    assert heading(program) == "Peak memory — train.py, 50 tokens"
    run = replace(program, model="opt-125m", tokens_requested=60)
    assert heading(run) == "Peak memory — opt-125m, 50/60 tokens"


def test_a_cpu_run_is_drawn_and_compared_against_its_predicted_rss() -> None:
    from vramtui.analysis.breakdown import compare, estimate_for_session
    from vramtui.predict.cpu_process import cpu_process
    from vramtui.tui.prediction import predicted_curve

    spec = RunSpec(model="opt-125m", tokens=50, device="cpu")
    session = ReplayRecorder(spec, synthetic_run("opt-125m", 50, backend="cpu")).session
    view = session.snapshot()
    est = estimate_for_session(view)
    assert est is not None and est.backend == "cpu"
    process = cpu_process().bytes  # the figure is RSS: the tensors and Python itself
    curve = predicted_curve(est, 20)
    assert curve[-1] == (49, est.step_peak_at(49) + process)
    data = build_plot_data(view, buckets=100, predicted=curve)
    assert data.predicted is not None and data.predicted.xs[-1] == 49
    rows = {r.component: r for r in compare(est, view)}
    assert rows["peak RSS"].predicted == est.peak_allocated_bytes + process
    assert rows["peak RSS"].measured == view.peaks["step_peak"].value


def test_the_apps_are_the_host_their_screens_ask_for() -> None:
    from textual.app import App

    from vramtui.tui.app import VramApp
    from vramtui.tui.app_host import AppHost
    from vramtui.tui.profile_app import ProfileApp

    def recorder(_: object) -> ReplayRecorder:
        return ReplayRecorder(RunSpec(), [])

    assert isinstance(VramApp(make_recorder=recorder), AppHost)
    assert isinstance(ProfileApp(recorder, out_dir=None), AppHost)
    assert not isinstance(App(), AppHost)  # host_of refuses it: a TypeError, not a guess
