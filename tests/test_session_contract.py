"""The session's typed contract: a frozen view for readers, a RunSpec or a ProgramSpec,
an Environment of named fields, and a JSON summary that earlier versions' files still
read back into."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.measure.script.program_process import Program
from vramtui.measure.session import Session
from vramtui.measure.summary_format import summary, view_from
from vramtui.report.saved import load_view
from vramtui.runspec import RunSpec
from vramtui.runspec.program_spec import ProgramSpec, saved_spec, tokens_requested

# JSON summaries as earlier versions wrote them (copied from benchmarks/results)
SAVED = Path(__file__).resolve().parent / "fixtures" / "saved"


def test_a_session_answers_its_readers_only_through_a_snapshot() -> None:
    session = Session(RunSpec(model="x", tokens=3), t0=0.0)
    session.apply(ev.Phase("decode", 0.1))
    assert not hasattr(session, "tokens_done") and not hasattr(session, "environment")
    assert session.snapshot().current_phase == "decode"


def test_a_programs_spec_names_the_program_not_a_run() -> None:
    spec = Program(("serve.py", "--n", "3")).spec()
    assert spec == ProgramSpec(model="serve.py", program="serve.py", argv=("--n", "3"))
    assert Program(("--n", "3"), module="pkg.main").spec().command == "-m pkg.main --n 3"
    view = Session(spec, t0=0.0).snapshot()
    saved = summary(view)
    assert saved["spec"] == {"model": "serve.py", "source": "program", "program": "serve.py",
                             "argv": ["--n", "3"]}  # fmt: skip
    assert saved["tokens_requested"] is None and tokens_requested(spec) == 0
    assert view_from(saved, []).spec == spec  # read back as what it was


def test_the_environment_takes_only_its_own_names() -> None:
    session = Session(RunSpec(), Environment(vramtui="1.0"), t0=0.0)
    session.set_environment(engine_pid=7, cuda_alloc_conf="expandable_segments:True")
    env = session.snapshot().environment
    assert (env.vramtui, env.engine_pid, env.cuda_alloc_conf) == (
        "1.0",
        7,
        "expandable_segments:True",
    )
    with pytest.raises(TypeError, match="not an environment field: enginepid"):
        session.set_environment(enginepid=8)


def test_an_engines_versions_are_fields_and_the_unknown_ones_are_kept() -> None:
    session = Session(RunSpec(), t0=0.0)
    versions = {"torch": "2.13.0", "python": "3.11.7", "accelerate": "1.16.0"}
    session.apply(ev.Hello(9, "cpu", "cpu", "CPU", None, 10**9, "process RSS", versions))
    env = session.snapshot().environment
    assert (env.torch, env.python, env.engine_pid, env.backend) == ("2.13.0", "3.11.7", 9, "cpu")
    assert env.other == {"accelerate": "1.16.0"}
    saved = env.to_dict()
    assert saved["accelerate"] == "1.16.0" and "gpu_name" not in saved  # never recorded
    assert Environment.from_dict(saved) == env


@pytest.mark.parametrize(
    ("name", "kind", "source"),
    [
        ("run-before-cache-field.json", RunSpec, "architecture"),  # no cache, placement
        ("track-block.json", ProgramSpec, "track"),  # a RunSpec-shaped dict, tokens None
        ("static-cache-run.json", RunSpec, "architecture"),
    ],
)
def test_sessions_saved_by_earlier_versions_read_back(name: str, kind: type, source: str) -> None:
    path = SAVED / name
    recorded = json.loads(path.read_text())
    view = load_view(path)
    assert isinstance(view.spec, kind) and view.spec.source == source
    assert view.spec.model == recorded["spec"]["model"]
    assert view.environment.device == recorded["environment"]["device"]
    assert view.environment.to_dict() == {
        k: v for k, v in recorded["environment"].items() if v is not None
    }
    assert summary(view)["status"] == recorded["status"]


def test_a_saved_spec_of_fields_no_longer_known_keeps_the_ones_that_are() -> None:
    spec = saved_spec({"model": "opt-125m", "tokens": 9, "retired_option": True})
    assert spec == RunSpec(model="opt-125m", tokens=9)
