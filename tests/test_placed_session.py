"""A placed run's record: each device's samples, peaks, CSV rows, show and the screens'
lines, from a synthetic stream with two fake GPUs; and a real placed run on the CPU."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, record

from vramtui.cli import main
from vramtui.measure.device_view import devices_summary
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report.export import csv_text, write_csv, write_json
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import on_two_gpus, synthetic_run
from vramtui.tui.screen_text import device_lines


def _session(upto: int | None = None) -> SessionView:
    items = on_two_gpus(synthetic_run("opt-1.3b", 200, upto=upto), "opt-1.3b")
    spec = RunSpec(model="opt-1.3b", tokens=200, device_map="auto")
    return ReplayRecorder(spec, items).session.snapshot()


def _device_samples(session: SessionView, device: str) -> list[tuple]:
    return [d for s in session.samples for d in s.devices or () if d[0] == device]


def test_each_device_has_its_layers_weights_and_peaks() -> None:
    session = _session()
    devices = {d["device"]: d for d in devices_summary(session)}
    assert list(devices) == ["cuda:0", "cuda:1"]
    assert devices["cuda:0"]["layers"] == list(range(12))
    assert devices["cuda:1"]["layers"] == list(range(12, 24))
    loaded = session.loaded
    assert loaded is not None
    assert devices["cuda:0"]["weights_bytes"] + devices["cuda:1"]["weights_bytes"] == (
        loaded.weights_bytes
    )
    for name, entry in devices.items():
        samples = _device_samples(session, name)
        assert entry["peak_allocated_bytes"] == max(d[3] for d in samples)
        assert entry["peak_reserved_bytes"] == max(d[2] for d in samples)
        assert entry["final_allocated_bytes"] == samples[-1][1]
    # the JSON summary carries the same list
    assert summary_of(session)["devices"] == devices_summary(session)


def test_a_single_device_run_has_no_device_list(tiny_session: SessionView) -> None:
    assert summary_of(tiny_session)["devices"] == []
    assert device_lines(tiny_session) == ""


def test_csv_rows_carry_the_device_and_show_gives_each_devices_peak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _session()
    rows = list(csv.DictReader(io.StringIO(csv_text(session))))
    engine = [r for r in rows if r["source"] == "engine"]
    assert {r["device"] for r in engine} == {"cuda:0", "cuda:1"}
    nvml = [r for r in rows if r["source"] == "nvml"]
    assert {r["device"] for r in nvml} == {"cuda:0", "cuda:1"}  # NVML on each GPU
    second = [int(r["step_peak_bytes"]) for r in engine if r["device"] == "cuda:1"]
    assert max(second) == max(d[3] for d in _device_samples(session, "cuda:1"))
    second_nvml = max(int(r["nvml_process_bytes"]) for r in nvml if r["device"] == "cuda:1")
    assert second_nvml == session.device_peaks["cuda:1"]["nvml_process"].value
    path = write_csv(session, tmp_path / "placed.csv")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("cuda:1"))
    assert f"{max(second) / 1e9:.2f} GB" in line
    assert f"{second_nvml / 1e9:.2f} GB" in line
    # the run's own peaks are cuda:0's, not mixed with cuda:1's rows
    first = session.peaks["step_peak"].value
    assert f"{first / 1e9:.2f} GB" in out
    json_path = write_json(session, tmp_path / "placed.json")
    assert main(["show", str(json_path)]) == 0
    text = capsys.readouterr().out
    assert "each device" in text and "12-23" in text


def test_a_csv_written_before_the_device_column_still_reads(
    tiny_session: SessionView, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = csv_text(tiny_session).splitlines()
    old = "\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n"
    path = tmp_path / "old.csv"
    path.write_text(old)
    assert main(["show", str(path)]) == 0
    assert f"{tiny_session.peaks['step_peak'].value / 1e6:.2f} MB" in capsys.readouterr().out


def test_the_run_screens_device_lines() -> None:
    session = _session(upto=50)
    text = device_lines(session, "cuda:1")
    lines = text.splitlines()
    assert lines[0] == "devices: now / peak"
    assert lines[1].startswith(" cuda:0 L0-11") and lines[2].startswith("▸cuda:1 L12-23")
    assert all(len(line) <= 33 for line in lines)  # fits the side panel at 80x24


@pytest.mark.engine
def test_a_placed_run_on_the_cpu_measures_its_device(tmp_path: Path) -> None:
    spec = RunSpec(model="tiny-opt", source="config", path=str(TINY_CONFIG), tokens=4,
                   device_map="sequential", max_memory="cpu=1GiB")  # fmt: skip
    session = view = record(spec)
    assert view.status == "completed", view.failure
    assert view.placed is not None and view.placed.devices[0]["device"] == "cpu"
    (entry,) = devices_summary(view)
    assert entry["layers"] == [0, 1] and entry["weights_bytes"] == view.loaded.weights_bytes
    assert all(s.devices and s.devices[0][0] == "cpu" for s in view.samples)
    assert entry["peak_allocated_bytes"] >= entry["weights_bytes"]  # RSS holds the weights
    summary = json.loads(write_json(session, tmp_path / "s.json").read_text())
    assert summary["spec"]["device_map"] == "sequential"
    assert summary["devices"][0]["device"] == "cpu"


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("vramtui:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-memory", "99=80GiB"], "names GPU 99, which is not here"),
        (["--max-memory", "cpu=80"], "a size needs a unit"),
        (["--max-memory", "cpu=1MB"], "less than the model's"),
        (["--device-map", "everywhere"], "invalid choice"),
    ],
)
def test_bad_placement_is_one_line_and_exit_2_before_the_engine(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import vramtui.commands.run as run_command

    def no_engine(*a: object, **k: object) -> None:
        raise AssertionError("the engine must not start")

    monkeypatch.setattr(run_command, "Recorder", no_engine)
    args = ["run", "--model", "opt-125m", "--tokens", "3", "--device-map", "auto", *flags]
    assert main(args) == 2
    assert needle in _one_line(capsys.readouterr().err)


def test_the_breakdown_of_a_placed_run_counts_its_own_devices_weights() -> None:
    from vramtui.analysis.breakdown import measured_breakdown

    session = _session(upto=50)
    breakdown = measured_breakdown(session)
    assert breakdown is not None
    first = devices_summary(session)[0]
    assert first["device"] == "cuda:0" and breakdown.weights_bytes == first["weights_bytes"]
