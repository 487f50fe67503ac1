"""A recorded session (its JSON and CSV) rebuilt into the session it was, and the app's
screens drawn from it by benchmarks/session_screenshots.py (how the docs'
screenshots of GPU runs are made): the rebuilt peaks are the recorded ones, a run out
of memory with its allocation snapshot draws its summary, two sessions their overlay."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import benchmark_script, resolved, tiny_spec

from vramtui.measure.allocator_snapshot import moment, snapshot_event
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import SessionView
from vramtui.measure.summary_check import rebuilt_differences
from vramtui.measure.summary_format import session_from
from vramtui.report.export import write_csv, write_json
from vramtui.report.saved import read_session_files
from vramtui.units import format_bytes

ALLOCATOR = Path(__file__).parent / "fixtures" / "allocator-snapshot.json"
MiB = 1 << 20


shots = benchmark_script("session_screenshots")


def _save(session: SessionView, stem: Path) -> Path:
    write_csv(session, stem.with_suffix(".csv"))
    return write_json(session, stem.with_suffix(".json"))


def svg_text(path: Path) -> str:
    """What an SVG screenshot shows, row after row (spaces as spaces)."""
    texts = re.findall(r"<text [^>]*>(.*?)</text>", path.read_text())
    return html.unescape("".join(texts)).replace("\xa0", " ")


@pytest.fixture(scope="module")
def oom_session() -> SessionView:
    """A run out of memory in decode (the engine's test hook, at token 4), with the
    allocation snapshot a `--snapshot` run on CUDA sends: its failed allocation's."""
    oom_at = {"VRAMTUI_TEST_OOM_AT_TOKEN": "4"}
    session = Recorder.for_run(resolved(tiny_spec(tokens=10)), extra_env=oom_at).run()
    allocator: dict[str, Any] = json.loads(ALLOCATOR.read_text())
    failed = {"action": "oom", "size": 64 * MiB, "stream": 0, "device_free": 3 * MiB}
    allocator["device_traces"][0].insert(2, failed)
    found = moment(allocator, 0, "oom")
    session.apply(snapshot_event(found, "/gpu/oom.snapshot.pickle", 4, "decode"))
    return session.snapshot()


def test_a_recorded_session_is_rebuilt_with_the_peaks_it_recorded(
    tiny_session: SessionView, tmp_path: Path
) -> None:
    path = _save(tiny_session, tmp_path / "run")
    summary, items = read_session_files(path)
    rebuilt = session_from(summary, items).snapshot()
    assert rebuilt_differences(rebuilt, summary) == []
    original = tiny_session
    assert {n: (p.value, p.token) for n, p in rebuilt.peaks.items()} == {
        n: (p.value, p.token) for n, p in original.peaks.items()
    }
    assert rebuilt.token_series("step_peak") == original.token_series("step_peak")
    assert rebuilt.status == "completed" and rebuilt.done == original.done


def test_a_rebuilt_session_that_differs_from_its_json_is_named(
    tiny_session: SessionView, tmp_path: Path
) -> None:
    path = _save(tiny_session, tmp_path / "run")
    summary, items = read_session_files(path)
    summary["peaks"]["step_peak"]["value"] += 1  # the JSON says other than its CSV
    wrong = rebuilt_differences(session_from(summary, items).snapshot(), summary)
    assert len(wrong) == 1 and wrong[0].startswith("peak step_peak: rebuilt")
    path.write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="differs from the recorded one"):
        shots.read_session(path)


@pytest.mark.engine
def test_the_summary_of_a_run_out_of_memory_shows_what_held_the_bytes(
    oom_session: SessionView, tmp_path: Path
) -> None:
    path = _save(oom_session, tmp_path / "oom")
    saved = json.loads(path.read_text())
    assert saved["status"] == "failed" and saved["allocation_snapshot"]["reason"] == "oom"
    out = tmp_path / "shots" / "oom.svg"
    shots.shoot("summary", [path], out, sessions=tmp_path / "app")
    shown = svg_text(out)
    assert f"{oom_session.tokens_done}/10 tokens · failed (oom)" in shown
    snap = saved["allocation_snapshot"]
    assert (  # the line wraps at the screen's width: its two ends
        f"What held the bytes at the out-of-memory (token 4, decode): "
        f"{format_bytes(snap['allocated_bytes'], 2)} in {snap['count']} allocations;"
    ) in shown
    assert f"failed asked {format_bytes(64 * MiB, 2)}" in shown
    assert "modeling_opt.py:330 forward" in shown  # the largest live one, by its frame
    assert list((tmp_path / "app").iterdir()) == []  # the app's copy is removed


def test_the_run_screen_is_drawn_from_the_files(tiny_session: SessionView, tmp_path: Path) -> None:
    path = _save(tiny_session, tmp_path / "run")
    out = tmp_path / "run.svg"
    shots.shoot("run", [path.with_suffix(".csv")], out, sessions=tmp_path / "app")
    assert "tiny-opt" in svg_text(out) and "12/12" in svg_text(out)


@pytest.mark.engine
def test_two_recorded_sessions_are_overlaid(
    tiny_session: SessionView, oom_session: SessionView, tmp_path: Path
) -> None:
    a, b = _save(tiny_session, tmp_path / "a"), _save(oom_session, tmp_path / "b")
    out = tmp_path / "compare.svg"
    shots.shoot("compare", [a, b], out)
    shown = svg_text(out)
    assert "[1] tokens=12" in shown and "[2] tokens=10" in shown
    assert "per-step peak" in shown and "compare 2 sessions" in shown


@pytest.mark.engine
def test_a_programs_screen_shows_its_output(tiny_session: SessionView, tmp_path: Path) -> None:
    path = _save(tiny_session, tmp_path / "program")
    out = tmp_path / "profile.svg"
    shots.shoot("profile", [path], out, sessions=tmp_path / "app", lines=["reply: 12 tokens"])
    assert "reply: 12 tokens" in svg_text(out)
    assert list((tmp_path / "app").iterdir()) == []
