"""`vramtui profile` end to end on the CPU: a real program, unchanged, in a fresh process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY_CONFIG

from vramtui.cli import main

PROGRAM = Path(__file__).parent / "fixtures" / "program.py"
# What program.py asks of each generate(): (batch, beams, new tokens, params key)
CALLS = [(2, 1, 6, "big"), (2, 3, 4, "big"), (1, 1, 3, "big"), (1, 1, 5, "small"), (1, 1, 7, "big")]


def profile(
    capfd: pytest.CaptureFixture[str], folder: Path, *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str, str, dict[str, Any], list[dict[str, str]]]:
    """Run `vramtui profile` on program.py; (exit code, stdout, stderr, JSON, CSV rows)."""
    out = folder / "sessions"
    out.mkdir()
    files = ["--csv", str(folder / "s.csv"), "--json", str(folder / "s.json")]
    args = ["profile", "--out", str(out), *files, str(PROGRAM), str(TINY_CONFIG)]
    code = main([*args, str(folder / "checkpoint"), *argv])
    stdout, stderr = capfd.readouterr()
    summary = json.loads((folder / "s.json").read_text())
    with open(folder / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return code, stdout, stderr, summary, rows


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("profile")
    capture = subprocess.run(
        [sys.executable, "-m", "vramtui", "profile", "--out", str(folder)]
        + ["--csv", str(folder / "s.csv"), "--json", str(folder / "s.json")]
        + [str(PROGRAM), str(TINY_CONFIG), str(folder / "checkpoint")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=300,
    )
    with open(folder / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "code": capture.returncode,
        "out": capture.stdout,
        "err": capture.stderr,
        "summary": json.loads((folder / "s.json").read_text()),
        "rows": rows,
        "folder": folder,
    }


@pytest.mark.engine
def test_every_generate_call_is_a_numbered_generation(completed: dict[str, Any]) -> None:
    assert completed["code"] == 0, completed["err"]
    summary = completed["summary"]
    assert summary["status"] == "completed"
    generations = summary["generations"]
    assert [g["index"] for g in generations] == list(range(len(CALLS)))
    params = {"big": generations[0]["params"], "small": generations[3]["params"]}
    assert params["small"] < params["big"]
    for g, (batch, beams, new, which) in zip(generations, CALLS, strict=True):
        assert (g["batch"], g["num_beams"], g["tokens_generated"]) == (batch, beams, new)
        assert g["prompt_tokens"] == 5
        assert g["params"] == params[which]
        assert g["model_class"] == "OPTForCausalLM"
        assert g["status"] == "completed"
        assert g["peak_allocated_bytes"] > 0
        assert 0 < g["t_start_s"] < g["t_end_s"]
    ends = [g["t_end_s"] for g in generations]
    starts = [g["t_start_s"] for g in generations]
    assert all(end <= start for end, start in zip(ends, starts[1:], strict=False))


@pytest.mark.engine
def test_tokens_run_on_across_calls_and_the_csv_says_which_call(completed: dict[str, Any]) -> None:
    generations = completed["summary"]["generations"]
    steps = [
        (int(r["token"]), r["phase"], r["generation"])
        for r in completed["rows"]
        if r["source"] == "engine" and r["token"]
    ]
    assert [t for t, _, _ in steps] == list(range(len(steps)))  # one sample a step, in order
    for g in generations:
        mine = [(t, phase) for t, phase, gen in steps if gen == str(g["index"])]
        assert [t for t, _ in mine] == list(range(g["first_token"], g["first_token"] + g["steps"]))
        assert mine[0][1] == "prefill" and {p for _, p in mine[1:]} <= {"decode"}
    # greedy, beams, sampling and a second model: one step a new token
    assert [g["steps"] for g in generations[:4]] == [new for _, _, new, _ in CALLS[:4]]


@pytest.mark.engine
def test_loads_and_the_time_between_calls_are_on_the_graph(completed: dict[str, Any]) -> None:
    rows = [r for r in completed["rows"] if r["source"] == "engine"]
    phases = [r["phase"] for r in rows]
    assert phases.count("load") >= 2  # from_config, and from_pretrained
    outside = [r for r in rows if not r["token"]]
    assert outside and all(r["generation"] == "" for r in outside)
    assert all(int(r["allocated_bytes"]) > 0 for r in rows)  # RSS on the CPU
    kv = [int(r["kv_cache_bytes"]) for r in rows if r["generation"] == "0"]
    assert kv == sorted(kv) and kv[0] > 0  # the cache grows step by step


@pytest.mark.engine
def test_the_program_output_passes_through_unchanged(completed: dict[str, Any]) -> None:
    out = completed["out"].splitlines()
    checkpoint = str(completed["folder"] / "checkpoint")
    assert out[0] == f"argv [{str(TINY_CONFIG)!r}, {checkpoint!r}]"
    assert "streamer saw 4 puts" in out  # the streamer still sees every token (and the prompt)
    assert out[-1] == "done"
    assert not any(line.startswith("vramtui") for line in out)  # vramtui writes to stderr
    assert "to stderr" in completed["err"]
    assert "generate() #4" in completed["err"]


@pytest.mark.engine
def test_show_reads_a_profiled_session(
    completed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(completed["folder"] / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "generate() calls" in text and "2 × 3 beams" in text
    assert main(["show", str(completed["folder"] / "s.csv")]) == 0
    steps = sum(g["steps"] for g in completed["summary"]["generations"])
    assert f"{steps} tokens" in capsys.readouterr().out
    saved = [p for p in completed["folder"].glob("*.json") if p.name != "s.json"]
    assert len(saved) == 1 and json.loads(saved[0].read_text())["generations"]


@pytest.mark.engine
def test_a_program_that_raises_prints_its_traceback_as_python_does(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err, summary, _ = profile(capfd, tmp_path, "raise")
    plain = subprocess.run(
        [sys.executable, str(PROGRAM), str(TINY_CONFIG), str(tmp_path / "plain"), "raise"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert code == plain.returncode == 1
    python_says = plain.stderr[plain.stderr.index("Traceback") :]
    assert python_says in err
    assert summary["status"] == "failed"
    assert summary["failure"]["message"] == "ValueError: the program's own error"
    assert len(summary["generations"]) == len(CALLS)  # nothing measured is lost


@pytest.mark.engine
def test_the_exit_code_is_the_programs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, _, summary, _ = profile(capfd, tmp_path, "exit3")
    assert code == 3
    assert summary["status"] == "failed"
    assert summary["failure"]["message"] == "the program exited with code 3"


@pytest.mark.engine
def test_an_out_of_memory_in_the_program_is_saved_with_where_it_happened(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    env_code, _, err, summary, rows = profile_with_env(
        capfd, tmp_path, {"VRAMTUI_TEST_OOM_AT_TOKEN": "2"}
    )
    assert env_code == 1
    failure = summary["failure"]
    assert (failure["kind"], failure["phase"], failure["token"]) == ("oom", "decode", 2)
    assert failure["requested_bytes"] == 2 * 1024**3
    assert failure["held_bytes"] > 0
    assert "OutOfMemoryError" in err
    assert summary["generations"][0]["status"] == "failed"
    assert summary["generations"][0]["steps"] == 2  # tokens 0 and 1 were measured


def profile_with_env(
    capfd: pytest.CaptureFixture[str], folder: Path, env: dict[str, str]
) -> tuple[int, str, str, dict[str, Any], list[dict[str, str]]]:
    mp = pytest.MonkeyPatch()
    try:
        for name, value in env.items():
            mp.setenv(name, value)
        return profile(capfd, folder)
    finally:
        mp.undo()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.py"], "vramtui: no such script: missing.py"),
        (["-m", "no_such_module_here"], "vramtui: no module named 'no_such_module_here'"),
        ([], "vramtui: profile needs a script"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(["profile", "--out", str(tmp_path), "--json", str(tmp_path / "s.json"), *argv])
    _, err = capfd.readouterr()
    assert code == 2
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.engine
def test_a_module_runs_as_under_python_dash_m(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "__init__.py").write_text("")
    (tmp_path / "mine" / "__main__.py").write_text(
        "import sys\nprint('module', __name__, sys.argv[1:])\nsys.exit(4)\n"
    )
    monkeypatch.chdir(tmp_path)
    code = main(["profile", "--out", str(tmp_path), "-m", "mine", "a", "--b"])
    out, err = capfd.readouterr()
    assert code == 4
    assert out == "module __main__ ['a', '--b']\n"


@pytest.mark.engine
def test_ctrl_c_saves_the_partial_session_and_exits_130(tmp_path: Path) -> None:
    """Ctrl+C at the terminal reaches vramtui and the program (one process group)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramtui", "profile", "--out", str(tmp_path)]
        + ["--json", str(tmp_path / "s.json"), str(PROGRAM), str(TINY_CONFIG), "-", "slow"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # real progress: the first generate() call has ended
        if "generate() #0" in line:
            break
    import os
    import signal

    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130  # the bound only ends a run that would hang
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "cancelled"
    assert summary["tokens_generated"] >= 100
    assert summary["generations"][0]["tokens_generated"] == 100
    assert "KeyboardInterrupt" in rest  # the program's own traceback, as under python


def test_show_still_reads_a_csv_written_before_the_generation_column(
    tmp_path: Path, tiny_session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramtui.report.export import CSV_COLUMNS_V1, csv_text

    lines = csv_text(tiny_session).splitlines()
    old = [",".join(line.split(",")[: len(CSV_COLUMNS_V1)]) for line in lines]
    assert old[0] == ",".join(CSV_COLUMNS_V1)
    (tmp_path / "old.csv").write_text("\n".join(old) + "\n")
    assert main(["show", str(tmp_path / "old.csv")]) == 0
    assert f"{tiny_session.tokens_done} tokens" in capsys.readouterr().out


def test_readings_between_calls_belong_to_no_token_and_a_later_prefill_to_its_own() -> None:
    """A program's second generate(): NVML readings while it runs its own code belong
    to no token, those in the second call's prefill to the step in progress."""
    from vramtui.measure import events as ev
    from vramtui.measure.session import NvmlSample, Session
    from vramtui.runspec.program_spec import ProgramSpec

    session = Session(ProgramSpec("p.py", "p.py"), t0=0.0)
    for t, name in ((0.0, "program"), (1.0, "prefill"), (1.5, "decode"), (3.0, "program")):
        session.apply(ev.Phase(name, t))
    for token, t in enumerate((1.2, 2.0, 2.5)):
        session.apply(ev.Sample(token, t, "decode", 100, 200, 150, 10))
    session.apply(ev.Phase("prefill", 4.0))
    for t, used in ((0.5, 1), (1.9, 7), (3.5, 99), (4.5, 5)):
        session.add_nvml(NvmlSample(t, used, used, 1000))
    session.apply(ev.Sample(3, 5.0, "prefill", 100, 200, 150, 10))
    view = session.snapshot()
    assert [view.token_at(t) for t in (0.5, 1.9, 3.5, 4.5)] == [None, 1, None, 3]
    assert view.nvml_token_max == {1: 7, 3: 5}  # 99, between the calls, is no step's
