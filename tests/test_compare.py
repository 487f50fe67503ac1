"""`vramtui compare`, and saved sessions read back into sessions (report.saved)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, record, tiny_spec

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.analysis.run_comparison import labelled, peak_of
from vramtui.cli import main
from vramtui.measure.session import Session, SessionView
from vramtui.report.comparison_text import change
from vramtui.report.export import write_csv, write_json
from vramtui.report.saved import load_view
from vramtui.runspec import RunSpec
from vramtui.units import format_bytes


@pytest.fixture(scope="module")
def eager_session() -> Session:
    """A second real run that differs from the tiny one in attention, batch and length."""
    return record(tiny_spec(attn="eager", batch=2, tokens=16))


def _save(session: Session, folder: Path, stem: str) -> Path:
    write_csv(session, folder / f"{stem}.csv")
    return write_json(session, folder / f"{stem}.json")


def test_a_saved_session_reads_back_as_the_session(
    tiny_session: SessionView, tmp_path: Path
) -> None:
    path = _save(tiny_session, tmp_path, "a")
    original, back = tiny_session, load_view(path)
    assert back.spec == original.spec and back.status == "completed"
    assert back.token_series("step_peak") == original.token_series("step_peak")
    assert back.token_series("kv_bytes") == original.token_series("kv_bytes")
    assert back.peak_allocated().value == original.peak_allocated().value
    assert measured_breakdown(back, "peak") == measured_breakdown(original, "peak")
    assert load_view(path.with_suffix(".csv")).tokens_done == original.tokens_done


def test_a_json_alone_keeps_its_peaks(tiny_session: SessionView, tmp_path: Path) -> None:
    path = write_json(tiny_session, tmp_path / "alone.json")
    back = load_view(path)
    assert back.tokens_done == 0  # no CSV, no series
    assert back.peaks["step_peak"].value == tiny_session.peaks["step_peak"].value


def test_change_is_bytes_and_percent() -> None:
    assert change(1000, 1500) == "+500 B (+50.0 %)"
    assert change(2000, 1000) == "-1.00 kB (-50.0 %)"
    assert change(None, 5) == "–"


@pytest.mark.engine
def test_labels_name_what_differs(tiny_session: SessionView, eager_session: SessionView) -> None:
    items = labelled([tiny_session, eager_session])
    assert [c.label for c in items] == [
        "tokens=12 batch=1 attn=sdpa",
        "tokens=16 batch=2 attn=eager",
    ]
    same = labelled([tiny_session, tiny_session])
    assert [c.label for c in same] == ["run 1", "run 2"]  # no paths: numbered


def test_a_run_asked_for_the_best_device_is_named_by_the_device_it_used(
    tiny_session: SessionView,
) -> None:
    view = tiny_session
    assert isinstance(view.spec, RunSpec)
    auto = replace(view, spec=replace(view.spec, device="auto"))  # `vramtui run` without --device
    assert view.environment.device == "cpu"
    assert [c.label for c in labelled([view, auto])] == ["run 1", "run 2"]
    gpu = replace(auto, environment=replace(view.environment, device="cuda:0"))
    assert [c.label for c in labelled([view, gpu])] == ["device=cpu", "device=cuda:0"]


@pytest.mark.engine
def test_compare_prints_both_peaks_and_the_change(
    tiny_session: SessionView,
    eager_session: SessionView,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = _save(tiny_session, tmp_path, "a")
    b = _save(eager_session, tmp_path, "b").with_suffix(".csv")  # either file of a session
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "they differ in: tokens, batch, attn" in out
    base, other = (peak_of(s, "step_peak") for s in (tiny_session, eager_session))
    row = next(line for line in out.splitlines() if line.startswith("per-step peak RSS"))
    assert format_bytes(base, 2) in row and format_bytes(other, 2) in row
    assert change(base, other) in row
    kv = [s.token_samples[-1].kv_bytes for s in (tiny_session, eager_session)]
    kv_row = next(line for line in out.splitlines() if line.startswith("KV cache at end"))
    assert change(kv[0], kv[1]) in kv_row
    assert "Breakdown at each run's peak step" in out


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("x.json", '{"hello": 1}', "not a vramtui session summary"),
        ("y.csv", "a,b\n1,2\n", "header differs"),
        ("z.txt", "hi", "expected a .json or .csv"),
        ("missing.json", None, "no such file"),
    ],
)
def test_a_missing_or_foreign_file_is_one_line_and_exit_2(
    tiny_session: SessionView,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    needle: str,
) -> None:
    good = _save(tiny_session, tmp_path, "good")
    bad = tmp_path / name
    if content is not None:
        bad.write_text(content)
    assert main(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_compare_needs_two(tiny_session: SessionView, tmp_path: Path, capsys) -> None:
    assert main(["compare", str(_save(tiny_session, tmp_path, "one"))]) == 2
    assert "at least two sessions" in capsys.readouterr().err


@pytest.mark.engine
def test_a_bench_csv_gives_one_session_a_cell(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "bench.csv"
    args = ["--config", str(TINY_CONFIG), "--batch", "1,3", "-n", "12", "--device", "cpu"]
    assert main(["bench", *args, "--csv", str(bench), "--quiet"]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(bench.read_text().splitlines()))
    assert main(["compare", str(bench), str(_save(tiny_session, tmp_path, "run"))]) == 0
    out = capsys.readouterr().out
    # the run has the first cell's settings: each is numbered, in order
    assert "[1] 1: batch=1" in out and "[2] 2: batch=3" in out and "(peaks only)" in out
    peaks = [int(r["peak_allocated_bytes"]) for r in rows]
    row = next(line for line in out.splitlines() if line.startswith("process RSS"))
    assert format_bytes(peaks[0], 2) in row and change(peaks[0], peaks[1]) in row
    assert "No breakdown" not in out  # the session has samples; the cells do not
