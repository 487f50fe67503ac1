"""Each device of a placed run predicted against measured: `show`, `run`'s summary and
the summary screen's table, on the H200's recorded offload run and two fake GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramtui.analysis.placed_comparison import placed_estimates
from vramtui.cli import main
from vramtui.measure.summary_format import typed_summary as summary_of
from vramtui.report.saved import load_view
from vramtui.report.summary_text import device_rows, summary_text
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import on_two_gpus, synthetic_run
from vramtui.units import format_bytes

OFFLOAD = Path(__file__).parent.parent / "benchmarks" / "results" / "offload_compare"


def _error(predicted: int, measured: int) -> str:
    return f"({(predicted - measured) / measured * 100:+.1f} %)"


def test_show_holds_the_recorded_offload_run_against_the_estimate_of_its_placement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = json.loads((OFFLOAD / "offload-h200.json").read_text())
    estimate = {
        d["device"]: d for d in json.loads((OFFLOAD / "estimate.json").read_text())["devices"]
    }
    assert main(["show", str(OFFLOAD / "offload-h200.json")]) == 0
    out = capsys.readouterr().out
    gpu = next(line for line in out.splitlines() if line.startswith("cuda:0 "))
    # the same prediction `vramtui estimate` made before the run, for the same placement
    alloc = estimate["cuda:0"]["peak_allocated_bytes"]
    total = estimate["cuda:0"]["peak_total_bytes"]
    measured = run["devices"][0]["peak_allocated_bytes"]
    assert f"{format_bytes(alloc, 2)} {_error(alloc, measured)}" in gpu
    assert f"{format_bytes(total, 2)} {_error(total, run['peak_nvml_process_bytes'])}" in gpu
    cpu = next(line for line in out.splitlines() if line.startswith("cpu "))
    rss = run["devices"][1]["peak_allocated_bytes"]
    cpu_total = estimate["cpu"]["peak_total_bytes"]
    assert f"{format_bytes(cpu_total, 2)} {_error(cpu_total, rss)}" in cpu


def _two_gpus() -> ReplayRecorder:
    spec = RunSpec(model="opt-1.3b", tokens=400, device_map="auto", max_memory="0=40GiB,1=40GiB")
    return ReplayRecorder(spec, on_two_gpus(synthetic_run("opt-1.3b", 400), "opt-1.3b"))


def test_each_gpu_predicted_for_the_layers_it_holds() -> None:
    view = _two_gpus().session.snapshot()
    predicted = placed_estimates(view)
    assert list(predicted) == ["cuda:0", "cuda:1"]
    held = {d["device"]: d for d in view.placed.devices}
    for device, guess in predicted.items():
        assert guess.weights_bytes == held[device]["weights_bytes"]
        assert guess.max_memory_bytes == 40 * 2**30
    # half the layers each: half the cache each; logits and sampling where the head is
    assert predicted["cuda:0"].kv_cache_bytes == predicted["cuda:1"].kv_cache_bytes
    assert predicted["cuda:1"].transient_bytes == 0 < predicted["cuda:0"].transient_bytes
    rows = device_rows(summary_of(view).devices, predicted)
    second = next(r for r in rows if r[0] == "cuda:1")
    assert second[4].startswith(format_bytes(predicted["cuda:1"].peak_allocated_bytes, 2))
    assert second[5] == format_bytes(view.device_peaks["cuda:1"]["nvml_process"].value, 2)


def test_a_saved_placed_run_shows_each_device_predicted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramtui.report.export import write_json

    session = _two_gpus().session.snapshot()
    path = write_json(session, tmp_path / "placed.json")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    predicted = placed_estimates(load_view(path))
    assert out.strip().endswith(summary_text(summary_of(session), predicted).strip()[-200:])
    line = next(x for x in out.splitlines() if x.startswith("cuda:1 "))
    assert format_bytes(predicted["cuda:1"].peak_total_bytes, 2) in line


def test_a_run_on_one_device_has_no_device_prediction(tiny_session) -> None:  # type: ignore[no-untyped-def]
    assert placed_estimates(tiny_session) == {}
    assert "each device" not in summary_text(summary_of(tiny_session))
