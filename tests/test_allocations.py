"""`--snapshot`: reading an allocator snapshot (what held the bytes at the peak or the OOM),
the engine's rule for which snapshot to keep, and how show and run present it.

The fixture is hand-built in the format torch.cuda.memory._snapshot() documents
(torch/cuda/memory.py: segments with blocks and frames, device_traces of actions):
one decode step whose transient is freed before the snapshot is taken.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    CPU_ONLY,
    TINY_CONFIG,
    WITH_GPU,
    before,
    make_app,
    opt13,
    record,
    resolved,
    tiny_spec,
)

from vramtui.cli import main
from vramtui.measure import events as ev
from vramtui.measure.allocator_snapshot import kind_of, made_by, moment, snapshot_event
from vramtui.measure.engine.snapshot import GAIN, Snapshots
from vramtui.measure.session import Session, SessionView
from vramtui.report.export import write_json
from vramtui.report.saved import load_view
from vramtui.runspec import RunSpec
from vramtui.testing.synthetic import synthetic_run
from vramtui.tui.snapshot_runs import with_snapshot_file
from vramtui.units import format_bytes

MiB = 1 << 20
# The transient was freed before the snapshot: the trace knows only the size it asked for.
TRANSIENT = 16 * MiB - 1000
FIXTURE = Path(__file__).parent / "fixtures" / "allocator-snapshot.json"


@pytest.fixture
def allocator() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def test_the_peak_is_found_inside_the_step_and_its_transient_put_back(
    allocator: dict[str, Any],
) -> None:
    found = moment(allocator, device=0, reason="peak")
    assert found.reason == "peak" and found.trace_index == 2
    assert found.allocated_bytes == 12 * MiB + 3 * MiB + TRANSIENT + 512
    assert found.by_kind == {
        "weights": 12 * MiB,
        "KV cache": 3 * MiB,  # the live block as it holds (2 MiB), the freed one as asked
        "transient": TRANSIENT,
        "other": 512,
    }
    top = found.top[0]
    assert (top.size, top.kind, top.frame) == (
        TRANSIENT,
        "transient",
        "modeling_opt.py:330 forward",
    )
    assert [a.kind for a in found.top[:3]] == ["transient", "weights", "weights"]
    assert found.count == 6 and found.trace_entries == 10


def test_the_state_at_the_end_without_a_trace(allocator: dict[str, Any]) -> None:
    allocator["device_traces"] = []
    found = moment(allocator, device=0, reason="peak")
    assert found.reason == "end" and found.allocated_bytes == 14 * MiB + 512
    assert any("no allocator trace" in n for n in found.notes)


def test_an_out_of_memory_is_the_moment_of_the_failed_allocation(
    allocator: dict[str, Any],
) -> None:
    trace = allocator["device_traces"][0]
    trace.insert(2, {"action": "oom", "size": 64 * MiB, "stream": 0, "device_free": 3 * MiB})
    found = moment(allocator, device=0, reason="oom")
    assert found.reason == "oom" and found.requested_bytes == 64 * MiB
    assert found.by_kind["transient"] == TRANSIENT and found.by_kind["KV cache"] == 1 * MiB


def test_an_oom_with_no_failed_allocation_in_the_trace_says_so(
    allocator: dict[str, Any],
) -> None:
    found = moment(allocator, device=0, reason="oom")
    assert found.requested_bytes is None and found.by_kind["transient"] == TRANSIENT
    assert any("no failed allocation" in n for n in found.notes)


def test_labels_come_from_the_frames() -> None:
    def frames(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"filename": f, "line": 1, "name": n} for f, n in pairs]

    assert kind_of(frames(("/x/transformers/modeling_utils.py", "from_pretrained"))) == "weights"
    assert kind_of(frames(("/x/transformers/cache_utils.py", "update"))) == "KV cache"
    assert kind_of(frames(("/x/modeling_llama.py", "forward"))) == "transient"
    assert kind_of(frames(("/x/mine.py", "main"))) == "other"
    engine = "/x/vramtui/measure/engine/"
    assert (
        kind_of(frames((engine + "model.py", "build"), (engine + "runner.py", "run"))) == "weights"
    )
    prompt = frames((engine + "model.py", "random_prompt"), (engine + "runner.py", "prompt"))
    assert kind_of(prompt) == "other"
    plumbing = frames(("/x/torch/nn/functional.py", "linear"), ("/x/modeling_opt.py", "forward"))
    assert made_by(plumbing) == "modeling_opt.py:1 forward"


class FakeSnapshots(Snapshots):
    """The engine's keep rule with torch left out: each snapshot is a number."""

    def _take(self) -> Any:
        self.taken += 1
        return self.taken

    def stop(self) -> None:
        pass


def test_the_engine_keeps_the_snapshot_of_the_peak_step(
    allocator: dict[str, Any], tmp_path: Path
) -> None:
    events: list[ev.Event] = []
    keeper = FakeSnapshots(tmp_path / "s.snapshot.pickle", 0, last_token=4, emit=events.append)
    base = 1000 * MiB
    small = int(base * GAIN / 2)
    peaks = [base, base + small, base - MiB, base + 3 * small, base + 4 * small]
    for token, peak in enumerate(peaks):
        keeper.step(token, "decode", peak)
    # token 1 passed the kept peak by less than GAIN: not taken; token 3 by more; the
    # last step passes it at all: taken
    assert keeper.taken == 3 and keeper.kept[1] == 4
    keeper.kept = (allocator, *keeper.kept[1:])
    keeper.finish()
    (event,) = events
    assert isinstance(event, ev.AllocationSnapshot)
    assert event.reason == "peak" and event.token == 4 and event.step_peak == peaks[-1]
    assert Path(event.path).is_file() and event.top[0]["kind"] == "transient"


class AllocatorSnapshots(FakeSnapshots):
    """Every snapshot taken is the fixture's."""

    def __init__(self, allocator: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allocator = allocator

    def _take(self) -> Any:
        self.taken += 1
        return self.allocator


@pytest.mark.parametrize("late_holds_it", [True, False])
def test_a_peak_under_the_gain_is_looked_for_in_a_snapshot_taken_at_the_end(
    allocator: dict[str, Any], tmp_path: Path, late_holds_it: bool
) -> None:
    # a compiled decode step passes the prefill's peak by less than GAIN: no snapshot of
    # its own; at the end one more is taken, used if its trace holds more than the kept
    in_trace = moment(allocator, 0, "peak").allocated_bytes
    first = in_trace - MiB if late_holds_it else in_trace + MiB
    events: list[ev.Event] = []
    keeper = AllocatorSnapshots(
        allocator, tmp_path / "s.snapshot.pickle", 0, last_token=3, emit=events.append
    )
    for token, peak in enumerate([first, first + MiB // 2, first - MiB, first - MiB]):
        keeper.step(token, "prefill" if token == 0 else "decode", peak)
    assert keeper.taken == 1
    keeper.finish()
    (event,) = events
    assert keeper.taken == 2 and event.run_peak == first + MiB // 2
    if late_holds_it:
        assert (event.token, event.phase, event.step_peak) == (1, "decode", first + MiB // 2)
    else:
        assert (event.token, event.phase, event.step_peak) == (0, "prefill", first)
    assert event.allocated_bytes == in_trace


def snapshot_session(tiny_session: SessionView, allocator: dict[str, Any], tmp_path: Path) -> Path:
    found = moment(allocator, 0, "peak")
    session = Session(tiny_session.spec, tiny_session.environment)
    for item in tiny_session.samples:
        session.apply(item)
    session.apply(snapshot_event(found, str(tmp_path / "s.snapshot.pickle"), 11, "decode"))
    return write_json(session.snapshot(), tmp_path / "s.json")


def test_show_lists_the_top_allocations(
    tiny_session: SessionView,
    allocator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = snapshot_session(tiny_session, allocator, tmp_path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "What held the bytes at the run's peak (token 11, decode): 32.51 MB" in out
    assert "16.78 MB  transient  modeling_opt.py:330 forward" in out
    assert "weights 12.58 MB · KV cache 3.15 MB · transient 16.78 MB · other 512 B" in out
    assert format_bytes(TRANSIENT, 2) == "16.78 MB"
    assert "memory_viz" in out
    assert load_view(path).allocation_snapshot.top[0]["frame"] == "modeling_opt.py:330 forward"


def test_snapshot_off_cuda_is_one_line_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--config", str(TINY_CONFIG), "--device", "cpu", "--snapshot", "-q", "-n", "12"]
    assert main([*args, "--json", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available on cpu" in err
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_summary_screen_lists_the_top_allocations(
    snap_compare: Callable[..., bool],
    allocator: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    found = moment(allocator, 0, "peak")
    items = synthetic_run("opt-1.3b", 300)
    event = snapshot_event(found, "sessions/run.snapshot.pickle", 299, "decode")
    app = make_app(opt13(300), [*items[:-1], event, items[-1]])
    assert snap_compare(app, terminal_size=(100, 40), run_before=before(finished=True))


def test_the_app_gives_each_cuda_run_a_snapshot_file_and_others_none(tmp_path: Path) -> None:
    said: list[str] = []
    when = datetime(2026, 1, 2, 3, 4, 5)
    gpu = resolved(RunSpec(model="opt-1.3b", device="cuda:0"), WITH_GPU)
    first = with_snapshot_file(gpu, tmp_path, when, lambda text, **_: said.append(text))
    assert first.spec.snapshot == str(tmp_path / "20260102-030405-opt-1.3b.snapshot.pickle")
    Path(first.spec.snapshot).touch()  # the engine wrote it: the next run gets a new name
    second = with_snapshot_file(gpu, tmp_path, when, lambda text, **_: said.append(text))
    assert second.spec.snapshot == str(tmp_path / "20260102-030405-opt-1.3b-2.snapshot.pickle")
    cpu = resolved(tiny_spec(), CPU_ONLY)
    assert with_snapshot_file(cpu, tmp_path, when, lambda text, **_: said.append(text)) == cpu
    assert said == ["--snapshot is CUDA only: no allocator snapshot on cpu"]


def test_the_app_flag_off_cuda_is_one_line_before_the_app_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--snapshot", "--device", "cpu", "--config", str(TINY_CONFIG), "-n", "12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available on cpu" in err


def _fixtures() -> list[Path]:
    """The hand-built fixture, and every real one a GPU run left beside it
    (benchmarks/snapshot_gpu.sh writes allocator-snapshot-h200.json.gz)."""
    return sorted(FIXTURE.parent.glob("allocator-snapshot*.json*"))


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_the_moment_is_the_peak_the_probe_measured(path: Path) -> None:
    """Independent figures: the step's peak read from torch's counters, and the weights
    counted from the model's tensors, against the snapshot's walk and its labels."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        data = json.load(f)
    measured = data["_measured"]
    found = moment(data, measured["device"], "peak")
    assert found.reason == "peak"
    assert abs(found.allocated_bytes - measured["step_peak"]) <= 0.001 * measured["step_peak"]
    assert (
        abs(found.by_kind["weights"] - measured["weights_bytes"])
        <= 0.01 * measured["weights_bytes"]
    )


@pytest.mark.engine
def test_an_engine_off_cuda_runs_as_ever_with_a_snapshot_path(tmp_path: Path) -> None:
    """The spec can carry a snapshot path onto any device (a run again from the app's
    form); off CUDA the engine records nothing and writes nothing."""
    target = tmp_path / "run.snapshot.pickle"
    view = record(tiny_spec(snapshot=str(target)))
    assert view.status == "completed" and view.tokens_done == 12
    assert view.allocation_snapshot is None and not target.exists()
