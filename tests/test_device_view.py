"""One device of a placed run as a session of its own: its samples, NVML, KV share and
forecast, from a synthetic stream with two fake GPUs; and a saved placed run read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramtui.analysis.live_forecast import forecast_oom
from vramtui.measure import events as ev
from vramtui.measure.device_view import device_names, devices_summary, kv_share, on_device
from vramtui.measure.session import Session
from vramtui.models.catalogue import lookup
from vramtui.report.export import write_csv, write_json
from vramtui.report.saved import load_view
from vramtui.runspec import RunSpec
from vramtui.testing.replay import ReplayRecorder
from vramtui.testing.synthetic import on_two_gpus, synthetic_run


def _session(upto: int | None = 300) -> Session:
    items = on_two_gpus(synthetic_run("opt-1.3b", 400, upto=upto), "opt-1.3b")
    spec = RunSpec(model="opt-1.3b", tokens=400, device_map="auto")
    return ReplayRecorder(spec, items).session


def test_the_second_gpu_seen_as_a_session_of_its_own() -> None:
    view = _session().snapshot()
    assert device_names(view) == ["cuda:0", "cuda:1"]
    second = on_device(view, "cuda:1")
    mine = [next(d for d in s.devices if d[0] == "cuda:1") for s in view.token_samples]
    assert [s.allocated for s in second.token_samples] == [d[1] for d in mine]
    assert [s.step_peak for s in second.token_samples] == [d[3] for d in mine]
    assert second.peaks["step_peak"] == view.device_peaks["cuda:1"]["step_peak"]
    # its NVML stream and each token's largest reading, not cuda:0's
    assert second.latest("nvml_process") == view.device_nvml["cuda:1"][-1].process_bytes
    assert second.token_series("nvml_process")
    assert second.latest("nvml_process") != view.latest("nvml_process")
    assert second.device_total() == view.device_nvml["cuda:1"][-1].device_total
    assert second.environment.device == "cuda:1" and second.hello.device == "cuda:1"
    # half the layers: half the KV cache
    last = view.token_samples[-1].kv_bytes
    assert second.token_samples[-1].kv_bytes == round(last * 0.5)


def test_the_run_device_keeps_its_series_and_gets_its_share_of_the_cache() -> None:
    view = _session().snapshot()
    first = on_device(view, "cuda:0")
    assert [s.allocated for s in first.samples] == [s.allocated for s in view.samples]
    assert first.nvml == view.nvml and first.peaks == view.peaks
    assert first.token_samples[-1].kv_bytes == round(view.token_samples[-1].kv_bytes * 0.5)


def test_layers_offloaded_to_the_cpu_keep_their_cache_on_the_first_gpu() -> None:
    session = Session(RunSpec(model="opt-13b", tokens=20, device_map="auto").to_dict())
    session.apply(
        ev.Placed(
            [
                {"device": "cuda:0", "weights_bytes": 12, "layers": list(range(18))},
                {"device": "cpu", "weights_bytes": 14, "layers": list(range(18, 40))},
            ]
        )
    )
    view = session.snapshot()
    assert kv_share(view, "cuda:0") == 1.0 and kv_share(view, "cpu") == 0.0


def test_each_device_has_its_own_forecast() -> None:
    view = _session().snapshot()
    info = lookup("opt-1.3b").opt
    assert info is not None
    per_token = info.kv_bytes_per_token("float16")
    second = forecast_oom(on_device(view, "cuda:1"))
    first = forecast_oom(on_device(view, "cuda:0"))
    assert second is not None and first is not None
    # cuda:1 grows by its half of the cache a token; cuda:0 by the other half
    assert second.bytes_per_token == pytest.approx(per_token / 2, rel=0.01)
    assert first.bytes_per_token == pytest.approx(per_token / 2, rel=0.05)
    assert second.headroom_bytes != first.headroom_bytes


def test_a_saved_placed_run_reads_back_with_each_device(tmp_path: Path) -> None:
    view = _session(upto=None).snapshot()
    write_csv(view, tmp_path / "run.csv")
    write_json(view, tmp_path / "run.json")
    loaded = load_view(tmp_path / "run.json")
    assert device_names(loaded) == ["cuda:0", "cuda:1"]
    for device in ("cuda:0", "cuda:1"):
        ours, back = on_device(view, device), on_device(loaded, device)
        assert back.token_series("step_peak") == ours.token_series("step_peak")
        assert back.peaks["nvml_process"].value == ours.peaks["nvml_process"].value
    assert devices_summary(loaded) == devices_summary(view)


def test_the_recorded_offload_run_seen_from_the_cpu() -> None:
    import csv

    from vramtui.analysis.breakdown import measured_breakdown
    from vramtui.report.summary_text import device_note

    stem = (
        Path(__file__).parent.parent / "benchmarks" / "results" / "offload_compare" / "offload-h200"
    )
    view = load_view(stem.with_suffix(".json"))
    assert device_names(view) == ["cuda:0", "cpu"]
    cpu = on_device(view, "cpu")
    with stem.with_suffix(".csv").open(newline="") as f:
        rss = [int(r["allocated_bytes"]) for r in csv.DictReader(f)
               if r["source"] == "engine" and r["device"] == "cpu"]  # fmt: skip
    assert [s.allocated for s in cpu.samples] == rss  # the engine's RSS, step by step
    breakdown = measured_breakdown(cpu)
    assert breakdown is not None
    assert breakdown.weights_bytes == view.placed.devices[1]["weights_bytes"]
    assert breakdown.kv_cache_bytes == 0  # the offloaded layers' cache is on cuda:0
    assert on_device(view, "cuda:0").token_samples[-1].kv_bytes == view.token_samples[-1].kv_bytes
    assert "CPU's share of a placed model" in (device_note(cpu.environment) or "")
