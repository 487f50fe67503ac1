"""Readers see consistent data: snapshots taken while a writer thread appends."""

from __future__ import annotations

import threading

import pytest

from vramtui.analysis.breakdown import measured_breakdown
from vramtui.measure import events as ev
from vramtui.measure.session import NvmlSample, Session, SessionView
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report.export import csv_text
from vramtui.runspec import RunSpec
from vramtui.tui.plotdata import build_plot_data

TOKENS = 3000


def write_run(session: Session, done: threading.Event) -> None:
    """A run's events and 5 NVML readings a step, as fast as the writer can go."""
    try:
        session.apply(ev.Hello(1, "cuda:0", "cuda", "GPU", None, 10**11, "torch.cuda", {}))
        session.apply(ev.Phase("load", 0.0))
        session.apply(ev.Sample(None, 0.5, "load", 10**9, 2 * 10**9, 10**9, None))
        session.apply(ev.Phase("prefill", 1.0))
        for i in range(TOKENS):
            t = 1.0 + i * 0.01
            for k in range(5):
                session.add_nvml(NvmlSample(t - 0.01 + k * 0.002, 3 * 10**9 + i, 4 * 10**9, 10**11))
            phase = "prefill" if i == 0 else "decode"
            session.apply(ev.Sample(i, t, phase, 10**9 + i, 2 * 10**9, 10**9 + 2 * i, i))
            if i == 0:
                session.apply(ev.Phase("decode", t))
        session.apply(ev.Done(TOKENS, 0.5, 0.01, 30.0, 30.0, 100.0, 100.0, None))
    finally:
        done.set()


def check(view: SessionView) -> None:
    """What must hold of any one moment of the run."""
    tokens = [s.token for s in view.token_samples]
    assert tokens == list(range(len(tokens)))
    assert [t for t, _ in view.token_series("step_peak")] == tokens
    nvml = view.token_series("nvml_process")
    assert len(nvml) <= len(tokens)
    times = [s.t for s in view.nvml]
    assert times == sorted(times)
    peak = view.peaks.get("step_peak")
    if tokens:
        assert peak is not None and peak.value == max(s.step_peak for s in view.token_samples)
    assert summary_of(view)["tokens_generated"] == len(tokens)


def test_readers_always_see_one_consistent_moment() -> None:
    # A small NVML cap, so the stored stream is thinned while readers read it.
    session = Session(RunSpec(model="x", tokens=TOKENS), t0=0.0, max_nvml_samples=1000)
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        try:
            while True:
                finished = done.is_set()  # read once more after the writer has ended
                view = session.snapshot()
                check(view)
                measured_breakdown(view, "peak")
                build_plot_data(view, buckets=80)
                csv_text(view)
                seen.append(view.tokens_done)
                if finished:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writer = threading.Thread(target=write_run, args=(session, done))
    for thread in (*readers, writer):
        thread.start()
    for thread in (writer, *readers):
        thread.join(timeout=300)
    assert not errors, errors[0]
    assert max(seen) == TOKENS  # the last look saw the whole run
    final = session.snapshot()
    assert final.status == "completed" and final.tokens_done == TOKENS
    assert len(final.nvml) < 1000  # thinned, keeping the largest reading of each window
    assert final.peaks["nvml_process"].value == 3 * 10**9 + TOKENS - 1


def test_a_snapshot_does_not_change_after_it_is_taken() -> None:
    session = Session(RunSpec(model="x", tokens=5), t0=0.0)
    session.apply(ev.Sample(0, 1.0, "prefill", 10, None, 12, 1))
    view = session.snapshot()
    session.apply(ev.Sample(1, 2.0, "decode", 11, None, 13, 2))
    assert view.tokens_done == 1 and session.snapshot().tokens_done == 2
    assert session.snapshot() is session.snapshot()  # unchanged: the same view, no copy
    with pytest.raises(AttributeError):
        session.status = "completed"  # type: ignore[misc]  # readers cannot write
