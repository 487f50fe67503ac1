"""The engine on a tiny OPT config on the CPU: real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import TINY_CONFIG, record, tiny_spec

from vramtui.measure import events as ev
from vramtui.measure.session import SessionView
from vramtui.measure.summary_format import summary as summary_of


def test_exactly_n_step_samples_with_tokens_in_order(tiny_session: SessionView) -> None:
    assert tiny_session.status == "completed"
    steps = [s for s in tiny_session.samples if s.token is not None]
    assert [s.token for s in steps] == list(range(12))
    # token 0's step is the prefill forward, and its sample says so
    assert [s.phase for s in steps] == ["prefill"] + ["decode"] * 11
    assert tiny_session.done is not None and tiny_session.done.tokens == 12


def test_phases_arrive_in_order(tiny_session: SessionView) -> None:
    names = [p.name for p in tiny_session.phases]
    assert names == ["start", "load", "prefill", "decode", "done"]
    times = [p.t for p in tiny_session.phases]
    assert times == sorted(times)


def test_step_peak_is_never_below_current(tiny_session: SessionView) -> None:
    for s in tiny_session.samples:
        assert s.step_peak is not None and s.allocated is not None
        assert s.step_peak >= s.allocated


def test_kv_cache_grows_one_position_per_step(tiny_session: SessionView) -> None:
    config = json.loads(TINY_CONFIG.read_text())
    per_position = 2 * config["num_hidden_layers"] * config["hidden_size"] * 4  # float32
    kv = [s.kv_bytes for s in tiny_session.token_samples]
    prompt = tiny_session.loaded.prompt_tokens  # type: ignore[union-attr]
    assert kv == [(prompt + i) * per_position for i in range(12)]


def test_cpu_figures_are_labelled_as_rss(tiny_session: SessionView) -> None:
    assert tiny_session.hello is not None
    assert tiny_session.hello.memory_source == "process RSS (psutil)"
    assert any("cpu" in n for n in tiny_session.notices)


def test_weights_bytes_are_parameters_times_four_in_float32(tiny_session: SessionView) -> None:
    loaded = tiny_session.loaded
    assert loaded is not None and loaded.dtype == "float32"
    assert loaded.weights_bytes == loaded.params * 4


def test_each_run_is_a_fresh_process(
    tiny_session: SessionView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    other = record(tiny_spec(tokens=2))
    assert other.hello is not None and tiny_session.hello is not None
    assert other.hello.pid != tiny_session.hello.pid
    # the allocator settings the engine inherited are kept with the run
    assert other.environment.cuda_alloc_conf == "expandable_segments:True"
    assert summary_of(other)["environment"]["cuda_alloc_conf"] == "expandable_segments:True"


@pytest.mark.engine
def test_the_parent_never_imports_torch() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from vramtui.measure.device_inventory import available
        from vramtui.measure.recorder import Recorder
        from vramtui.runspec import RunSpec, resolve
        spec = RunSpec(model="t", source="config", path={str(TINY_CONFIG)!r}, tokens=3,
                       device="cpu")
        s = Recorder.for_run(resolve(spec, available())).run().snapshot()
        assert s.status == "completed", s.status
        bad = [m for m in ("torch", "transformers") if m in sys.modules]
        print("IMPORTED", bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout


@pytest.mark.engine
def test_oom_inside_a_step_is_reported_with_phase_and_token() -> None:
    session = record(tiny_spec(tokens=10), extra_env={"VRAMTUI_TEST_OOM_AT_TOKEN": "4"})
    assert session.status == "failed"
    failure = session.failure
    assert failure is not None and failure.kind == "oom"
    assert failure.phase == "decode" and failure.token == 4
    assert failure.requested_bytes == 2 * 1024**3
    assert [s.token for s in session.token_samples] == [0, 1, 2, 3]
    last = session.samples[-1]
    assert last.token is None and last.phase == "decode" and last.step_peak is not None


@pytest.mark.engine
def test_a_killed_engine_is_reported_as_crashed_and_keeps_samples() -> None:
    session = record(tiny_spec(tokens=10), extra_env={"VRAMTUI_TEST_CRASH_AT_TOKEN": "3"})
    assert session.status == "failed"
    assert session.failure is not None and session.failure.kind == "crashed"
    assert [s.token for s in session.token_samples] == [0, 1, 2]


def test_wire_format_round_trips_every_event() -> None:
    events = [
        ev.Hello(1, "cuda:0", "cuda", "H100", "GPU-x", 80, "torch.cuda", {"torch": "2"}),
        ev.Phase("load", 1.5),
        ev.Sample(3, 2.0, "decode", 10, 20, 30, 40),
        ev.Sample(None, 2.0, "load", 10, None, None, None),
        ev.Sample(4, 2.1, "decode", 10, 20, 30, 40, (("cuda:1", 5, 6, 7), ("cpu", 8, None, 9))),
        ev.Placed([{"device": "cuda:0", "weights_bytes": 3, "layers": [0, 1]}]),
        ev.Loaded(1, 2, "float16", 2048, 2, 8, 2, 4, 8, 0.1, "opt"),
        ev.Done(5, 0.1, 0.2, 0.3, 0.5, 10.0, 13.3, 99),
        ev.Failed("oom", "boom", "decode", 3, 7, 9),
        ev.Failed("usage", "no device 'cuda:7' here", "start", field="device"),
    ]
    assert [ev.decode(ev.encode(e)) for e in events] == events
