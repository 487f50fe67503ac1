"""`vramtui show`: saved sessions passed back in, good and bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramtui.cli import main
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report.export import write_csv, write_json


def test_show_json_prints_the_saved_peaks(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_json(tiny_session, tmp_path / "s.json")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    peak = tiny_session.peaks["step_peak"]
    assert "Peak memory — tiny-opt, 12 tokens" in out
    assert f"{peak.value / 1e6:.2f} MB" in out


def test_show_csv_finds_the_same_peak(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tiny_session, tmp_path / "s.csv")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "12 tokens" in out
    assert f"{tiny_session.peaks['step_peak'].value / 1e6:.2f} MB" in out


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("a.json", "{broken", "not valid JSON"),
        ("b.json", '{"hello": 1}', "not a vramtui session summary"),
        ("c.csv", "x,y\n1,2\n", "header differs"),
        ("d.txt", "hello", "expected a .json or .csv"),
    ],
)
def test_bad_files_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_damaged_csv_row(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tiny_session, tmp_path / "s.csv")
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[4] = "lots"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    assert main(["show", str(path)]) == 2
    assert "line 4: allocated_bytes is not a whole number" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_placed_runs_csv_is_read_as_its_own_devices_series() -> None:
    """opt-13b offloaded to the CPU on the H200: the CSV has a cpu row beside each cuda:0
    row; the session read back keeps cuda:0's series (the JSON's peaks), one a step, and
    each device's figures (the JSON's devices)."""
    from vramtui.measure.summary_check import rebuilt_differences
    from vramtui.report.saved import load_view

    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "offload_compare"
    view = load_view(results / "offload-h200.csv")
    recorded = json.loads((results / "offload-h200.json").read_text())
    assert len(list(view.token_samples)) == recorded["tokens_generated"]
    assert view.peaks["allocated"].value == recorded["peaks"]["allocated"]["value"]
    assert view.peaks["allocated"].token == recorded["peaks"]["allocated"]["token"]
    assert [d["device"] for d in summary_of(view)["devices"]] == ["cuda:0", "cpu"]
    assert rebuilt_differences(view, recorded) == []


def test_show_prints_what_the_run_printed(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramtui.measure.summary_format import typed_summary
    from vramtui.report.summary_text import summary_text

    path = write_json(tiny_session, tmp_path / "s.json")
    assert main(["show", str(path)]) == 0
    assert capsys.readouterr().out == summary_text(typed_summary(tiny_session)) + "\n"


def test_an_older_summary_reads_back_typed_with_defaults() -> None:
    """A placed run's file written before each GPU's NVML peak was kept: the run's own
    device takes the run's NVML peak; what the file lacks takes its default."""
    from vramtui.measure.summary_format import read_summary

    devices = [{"device": "cuda:0", "layers": [0, 1]}, {"device": "cpu", "layers": [2]}]
    saved = {"vramtui_summary_version": 1, "status": "completed", "tokens_generated": 3,
             "peaks": {"allocated": {"value": 5, "token": 2, "phase": "decode", "t_s": 0.5}},
             "spec": {"model": "m"}, "environment": {"device": "cuda:0"},
             "peak_nvml_process_bytes": 7, "devices": devices}  # fmt: skip
    summary = read_summary(saved)
    assert [(d.device, d.layers, d.peak_nvml_process_bytes) for d in summary.devices] == [
        ("cuda:0", (0, 1), 7),
        ("cpu", (2,), None),
    ]
    assert summary.peaks["allocated"].token == 2 and summary.peaks["allocated"].t == 0.5
    assert summary.failure is None and summary.startup is None and summary.cap_bytes is None
    assert summary.environment.device == "cuda:0" and summary.tokens_requested is None
