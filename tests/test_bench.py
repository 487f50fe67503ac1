"""`vramtui bench`: real sweeps of a tiny model on the CPU, and the rest with a fake engine."""

from __future__ import annotations

import csv
import io
import itertools
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from vramtui.cli import main
from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.session import Environment, Session
from vramtui.report import bench_table as bench_report
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun, RunSpec
from vramtui.sweep import grid as bench
from vramtui.sweep import sweep_runner as runner
from vramtui.sweep.results import CellResult

TINY = str(Path(__file__).parent / "fixtures" / "tiny-opt.json")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["bench", *args])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == bench_report.CSV_COLUMNS
        return list(reader)


# ---- real engine processes -----------------------------------------------------------


@pytest.mark.engine
def test_two_cell_sweep_runs_each_cell_in_its_own_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    csv_path, md_path = tmp_path / "bench.csv", tmp_path / "bench.md"
    code, out, err = run_cli(
        capsys,
        "--config",
        TINY,
        "--tokens",
        "5,10",
        "--device",
        "cpu",
        "--csv",
        str(csv_path),
        "--markdown",
        str(md_path),
    )
    assert code == 0, err
    rows = read_rows(csv_path)
    assert [r["tokens"] for r in rows] == ["5", "10"]
    assert [r["tokens_generated"] for r in rows] == ["5", "10"]
    assert all(r["status"] == "completed" for r in rows)
    pids = {int(r["engine_pid"]) for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    for row in rows:
        assert row["model"] == "tiny-opt" and row["device"] == "cpu" and row["dtype"] == "float32"
        assert int(row["weights_bytes"]) > 0 and int(row["peak_allocated_bytes"]) > 0
        assert float(row["tokens_per_s"]) > 0 and row["torch"] and row["transformers"]
        assert row["bytes_per_param_basis"] == "peak_allocated"
        assert row["cuda_alloc_conf"] == "expandable_segments:True"
    markdown = md_path.read_text()
    assert "| model | tokens | attn | weights | peak allocated |" in markdown
    assert "| tiny-opt | 5 | sdpa |" in markdown and "| tiny-opt | 10 | sdpa |" in markdown
    assert f"`vramtui bench --config {TINY} --tokens 5,10 --device cpu`" in markdown
    assert "transformers" in markdown.splitlines()[0]
    assert "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in markdown
    assert "tiny-opt  5 " in out and "tiny-opt  10" in out  # the table on stdout
    assert "cell 2/2" in err  # progress on stderr


@pytest.mark.engine
def test_a_failing_cell_in_the_middle_does_not_stop_the_others(tmp_path: Path) -> None:
    axes = bench.Axes(
        models=[bench.ModelRef("tiny-opt", "config", TINY)],
        tokens=[3, 4, 5],
        base=RunSpec(device="cpu"),
    )
    written: list[str] = []
    results: list[CellResult] = []

    def on_cell_done(result: CellResult) -> None:
        results.append(result)
        written.append(bench_report.csv_text(results))

    def crash_second(cell: bench.Cell) -> dict[str, str] | None:
        return {"VRAMTUI_TEST_CRASH_AT_TOKEN": "1"} if cell.index == 2 else None

    out = runner.run_sweep(axes.cells(), on_cell_done, cell_env=crash_second)
    assert [r.outcome for r in out] == ["completed", "failed", "completed"]
    assert out[1].failure_kind == "crashed" and out[1].tokens_generated == 1
    assert out[2].tokens_generated == 5
    assert len({r.engine_pid for r in out}) == 3
    assert [len(list(csv.reader(io.StringIO(t)))) - 1 for t in written] == [1, 2, 3]
    assert "failed (crashed)" in bench_report.markdown_text(out, axes)


# ---- bad input: one line, exit 2, nothing run ------------------------------------------


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no engine may start")

    monkeypatch.setattr(runner, "Recorder", refuse)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--models", "opt-125m", "--tokens", "20,abc"], "--tokens: not a positive whole number"),
        (["--models", "opt-125m,opt-9000", "--tokens", "20"], "`vramtui models` lists the"),
        (["--models", "opt-125m", "--tokens", "20,,30"], "empty item"),
        (["--models", "opt-125m", "--tokens", "0"], "--tokens: not a positive"),
        (["--models", "opt-125m", "--batch", "1,-8"], "--batch: not a positive"),
        (["--models", "opt-125m", "--attn", "sdpa,flash"], "--attn: not one of sdpa, eager"),
        (["--models", "opt-125m", "--dtype", "float8"], "--dtype: not one of float16"),
        (["--models", "opt-125m", "--repeat", "x"], "not a whole number"),
        (["--models", "opt-125m", "--ahead", "-1"], "--ahead takes 0 or more engines"),
        (["--tokens", "20"], "name the models"),
        (["--config", "/nonexistent/config.json"], "not found"),
        (["--models", "opt-125m", "--tokens", "3000"], "no cell can run"),
        (["--models", "opt-125m", "--device", "tpu:0"], "devices here: "),
    ],
)
def test_bad_axes_are_one_line_and_exit_2(
    args: list[str], needle: str, no_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vramtui: ") and needle in lines[0], err
    assert out == ""


def test_outputs_are_checked_before_any_run(
    tmp_path: Path, no_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "old.csv"
    existing.write_text("keep me\n")
    code, _, err = run_cli(capsys, "--models", "opt-125m", "--csv", str(existing))
    assert code == 2 and "--force" in err
    assert existing.read_text() == "keep me\n"
    code, _, err = run_cli(capsys, "--models", "opt-125m", "--markdown", str(tmp_path / "no/x.md"))
    assert code == 2 and "does not exist" in err


# ---- the grid --------------------------------------------------------------------------


def test_cells_are_the_product_with_repeats_outermost() -> None:
    axes = bench.Axes.of_catalogue(
        ["opt-125m", "facebook/OPT-350m"], tokens=[20, 2000], attn=["sdpa", "eager"], repeat=2
    )
    cells = axes.cells()
    assert len(cells) == 2 * 2 * 2 * 2
    assert [c.index for c in cells] == list(range(1, 17))
    assert [c.repeat for c in cells] == [1] * 8 + [2] * 8
    first = [(c.spec.model, c.spec.tokens, c.spec.attn) for c in cells[:8]]
    assert first[:3] == [
        ("opt-125m", 20, "sdpa"),
        ("opt-125m", 20, "eager"),
        ("opt-125m", 2000, "sdpa"),
    ]
    assert first[4][0] == "opt-350m"
    assert cells[0].key == cells[8].key  # the same configuration, repeated


def test_combinations_past_the_position_limit_are_left_out_with_a_note() -> None:
    axes = bench.Axes.of_catalogue(["opt-125m"], tokens=[20, 2000], prompt_tokens=[8, 2000])
    cells, left_out = axes.plan()
    pairs = [(c.spec.prompt_tokens, c.spec.tokens) for c in cells]
    assert pairs == [(8, 20), (2000, 20), (8, 2000)]
    assert left_out == ["opt-125m: prompt 2000 + 2000 new tokens exceeds its 2048 positions"]
    assert axes.varying() == ["prompt_tokens"]


def test_the_recorded_command_rebuilds_the_same_grid() -> None:
    from vramtui.cli import build_parser
    from vramtui.commands.bench import axes_from_args

    axes = bench.Axes.of_catalogue(
        ["opt-125m", "opt-1.3b"],
        tokens=[20, 2000],
        batch=[1, 8],
        dtype=["bfloat16"],
        attn=["sdpa", "eager"],
        repeat=3,
        device="cuda:1",
    )
    command = axes.command()
    assert command.startswith("vramtui bench --models opt-125m,opt-1.3b --tokens 20,2000")
    again = axes_from_args(build_parser().parse_args(command.split()[1:]))
    two_gpus = DeviceList(
        (
            DeviceChoice("cuda:0", "GPU 0"),
            DeviceChoice("cuda:1", "GPU 1"),
            DeviceChoice("cpu", "CPU"),
        )
    )
    assert [c.spec for c in again.cells(two_gpus)] == [c.spec for c in axes.cells(two_gpus)]


# ---- a fake engine: outcomes, exit codes, tables, Ctrl+C ---------------------------------

_pids = itertools.count(40_000)


def fake_events(spec: RunSpec, *, oom_at: int | None = None, rate: float = 100.0) -> list[ev.Event]:
    """What an engine on a GPU with NVML might say: 2 bytes a parameter, KV growing."""
    params = 1_000_000 * (1 + spec.batch)
    pid = next(_pids)
    out: list[ev.Event] = [
        ev.Hello(
            pid,
            "cuda:0",
            "cuda",
            "Fake GPU 80GB",
            None,
            80 * 10**9,
            "torch.cuda",
            {"torch": "2.11.0", "transformers": "5.17.0", "cuda_runtime": "12.8"},
        ),
        ev.Phase("load", 1.0),
        ev.Loaded(2 * params, params, "float16", 2048, 2, 64, 4, 16, spec.prompt_tokens, 0.1),
    ]
    t = 2.0
    for token in range(spec.tokens):
        if token == oom_at:
            out.append(
                ev.Failed(
                    "oom",
                    "CUDA out of memory. Tried to allocate 2.00 GiB",
                    "decode",
                    token,
                    2 * 1024**3,
                    3 * params,
                )
            )
            return out
        t += 1 / rate
        held = 2 * params + 1000 * token
        out.append(ev.Sample(token, t, "decode", held, held + 10**6, held + 500, 1000 * token))
    seconds = spec.tokens / rate
    out.append(ev.Done(spec.tokens, 0.1, 0.0, seconds, seconds, rate, rate, None))
    return out


class FakeRecorder:
    """Stands in for Recorder: plays `behaviour(spec)`'s events into a Session."""

    behaviour: Any = staticmethod(lambda spec: fake_events(spec))

    def __init__(
        self, run: ResolvedRun, extra_env: dict[str, str] | None = None, **options: Any
    ) -> None:
        spec = self.spec = run.spec
        self.session = Session(spec, Environment(vramtui="0.1.0", driver="570.1"))
        self.cancelled = threading.Event()

    @classmethod
    def for_run(cls, run: ResolvedRun, **options: Any) -> FakeRecorder:
        return cls(run, **options)

    def cancel(self, reason: str = "cancelled by the user") -> None:
        self.reason = reason
        self.cancelled.set()

    def run(self, on_event: Any = None) -> Session:
        for event in self.behaviour(self.spec):
            if event == "block":  # wait for cancel(), as a real engine would end
                assert self.cancelled.wait(10)
                self.session.fail(ev.Failed("cancelled", self.reason, "decode", 2))
                break
            self.session.apply(event)
            if isinstance(event, ev.Hello):
                self.session.set_environment(engine_pid=event.pid)
            if on_event is not None:
                on_event(event)
        return self.session


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeRecorder]:
    class Fake(FakeRecorder):
        pass

    monkeypatch.setattr(runner, "Recorder", Fake)
    return Fake


@pytest.mark.engine
def test_ahead_and_no_overlap_reach_the_sweep(
    fake: type[FakeRecorder], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramtui.commands import bench as command

    plans: list[runner.Ahead] = []
    forks: list[bool] = []

    class Spy(runner.Sweep):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            plans.append(self.ahead)
            forks.append(self.fork)

    monkeypatch.setattr(command, "Sweep", Spy)
    for flags in (["--ahead", "3"], ["--no-overlap"], [], ["--fork"], ["--fork", "--no-overlap"]):
        code, _, err = run_cli(capsys, "-m", "opt-125m", "-n", "5", "-d", "cpu", "-q", *flags)
        assert code == 0, err
    default = max(0, min(runner.AHEAD, (os.cpu_count() or 1) - 1))
    cpu = [runner.Ahead(k, beside_cells=False) for k in (3, 0, default, default, 0)]  # waves
    assert plans == cpu
    assert forks == [False, False, False, True, True]  # forked only with --fork


def test_an_oom_cell_is_a_result_and_the_sweep_goes_on(
    fake: type[FakeRecorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.behaviour = staticmethod(
        lambda spec: fake_events(spec, oom_at=7 if spec.tokens == 20 else None)
    )
    csv_path, md_path = tmp_path / "b.csv", tmp_path / "b.md"
    code, out, err = run_cli(
        capsys,
        "--models",
        "opt-125m,opt-350m",
        "--tokens",
        "10,20",
        "-q",
        "--csv",
        str(csv_path),
        "--markdown",
        str(md_path),
    )
    assert code == 0, err
    rows = read_rows(csv_path)
    assert [(r["status"], r["failure_kind"]) for r in rows] == [
        ("completed", ""),
        ("failed", "oom"),
        ("completed", ""),
        ("failed", "oom"),
    ]
    oom = rows[1]
    assert oom["failure_token"] == "7" and oom["tokens_generated"] == "7"
    assert int(oom["peak_allocated_bytes"]) == 2 * 2_000_000 + 6000 + 500  # reached, kept
    assert oom["oom_requested_bytes"] == str(2 * 1024**3) and oom["tokens_per_s"] == ""
    assert oom["driver"] == "570.1" and oom["device_name"] == "Fake GPU 80GB"
    markdown = md_path.read_text()
    assert "OOM (≥ 4.01 MB)" in markdown and "OOM (≥" in out
    assert "out of memory at token 7" in markdown
    assert markdown.startswith("**Fake GPU 80GB · driver 570.1 · CUDA 12.8 · torch 2.11.0")
    assert "| opt-125m | 10 | sdpa | 4.00 MB | 4.01 MB | 5.01 MB | – | 2.00 | 100.0 |" in markdown


def test_any_other_failure_makes_exit_1_and_keeps_every_row(
    fake: type[FakeRecorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def behaviour(spec: RunSpec) -> list[Any]:
        events = fake_events(spec)
        return events[:5] if spec.tokens == 20 else events  # the engine vanishes mid-run

    fake.behaviour = staticmethod(behaviour)
    csv_path = tmp_path / "b.csv"
    code, out, _ = run_cli(
        capsys, "--models", "opt-125m", "--tokens", "10,20,30", "-q", "--csv", str(csv_path)
    )
    assert code == 1
    rows = read_rows(csv_path)
    assert [(r["tokens"], r["status"], r["failure_kind"]) for r in rows] == [
        ("10", "completed", ""),
        ("20", "failed", "crashed"),
        ("30", "completed", ""),
    ]
    assert "failed (crashed)" in out


def test_repeats_merge_into_one_markdown_row_with_median_and_range(
    fake: type[FakeRecorder],
) -> None:
    rates = iter([90.0, 110.0, 100.0])
    fake.behaviour = staticmethod(lambda spec: fake_events(spec, rate=next(rates)))
    axes = bench.Axes.of_catalogue(["opt-125m"], tokens=[10], repeat=3)
    results = runner.run_sweep(axes.cells())
    markdown = bench_report.markdown_text(results, axes)
    assert "| model | tokens | attn | runs | weights |" in markdown
    assert "| opt-125m | 10 | sdpa | 3/3 | 4.00 MB |" in markdown
    assert "| 100.0 (90.0–110.0) |" in markdown
    assert "tok/s the median (min–max)" in markdown
    header, rows = bench_report.table_rows(results, [], group_repeats=False)
    assert "repeat" in header and len(rows) == 3


def test_ctrl_c_cancels_the_running_cell_keeps_finished_rows_and_exits_130(
    fake: type[FakeRecorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def behaviour(spec: RunSpec) -> list[Any]:
        if spec.tokens == 20:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl+C during cell 2
            return fake_events(spec)[:4] + ["block"]
        return fake_events(spec)

    fake.behaviour = staticmethod(behaviour)
    csv_path = tmp_path / "b.csv"
    code, _, err = run_cli(
        capsys, "--models", "opt-125m", "--tokens", "10,20,30", "-q", "--csv", str(csv_path)
    )
    assert code == 130, err
    rows = read_rows(csv_path)
    assert [(r["tokens"], r["status"]) for r in rows] == [("10", "completed"), ("20", "cancelled")]
    cancelled = rows[1]
    assert cancelled["failure_message"] == "interrupted by SIGINT"
    assert cancelled["tokens_generated"] == "1" and cancelled["peak_allocated_bytes"]
    expected = "interrupted (SIGINT); 1 completed, 1 cancelled (its figures so far kept), 1 not run"
    assert expected in err


def test_a_device_that_is_not_there_ends_the_sweep_with_exit_2(
    fake: type[FakeRecorder], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.behaviour = staticmethod(
        lambda spec: [
            ev.Phase("start", 0.0),
            ev.Failed("usage", "no device 'cuda:3' here; devices here: cpu", "start"),
        ]
    )
    code, _, err = run_cli(capsys, "--models", "opt-125m,opt-350m", "--tokens", "10,20", "-q")
    assert code == 2
    assert err.strip().splitlines()[-1] == "vramtui: no device 'cuda:3' here; devices here: cpu"


def test_a_model_that_cannot_be_built_skips_only_its_own_cells(fake: type[FakeRecorder]) -> None:
    def behaviour(spec: RunSpec) -> list[Any]:
        if spec.model == "opt-125m":
            return fake_events(spec)[:2] + [ev.Failed("usage", "cannot build it", "load")]
        return fake_events(spec)

    fake.behaviour = staticmethod(behaviour)
    axes = bench.Axes.of_catalogue(["opt-125m", "opt-350m"], tokens=[10, 20])
    results = runner.run_sweep(axes.cells())
    assert [r.outcome for r in results] == ["failed", "skipped", "completed", "completed"]
    assert "opt-125m failed: cannot build it" in (results[1].failure_message or "")


def test_axes_reject_bad_values_built_in_code() -> None:
    with pytest.raises(UsageError, match="--attn"):
        bench.Axes.of_catalogue(["opt-125m"], attn=["flash"]).cells()
    with pytest.raises(UsageError, match="--repeat"):
        bench.Axes.of_catalogue(["opt-125m"], repeat=0).cells()
