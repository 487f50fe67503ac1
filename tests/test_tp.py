"""Tensor parallel without a launch: each rank's predicted share, the launcher's command
line and checks, how its failures read, the per-rank summary, its merge and its text."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from helpers import TINY_CONFIG, run_cli

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.measure.rank_summary import KEY, imbalance, merge
from vramtui.measure.ranks import PEER_FAILED, peer_failure
from vramtui.measure.tp_launch import TpLaunch, exit_codes, launch_failure
from vramtui.predict.tp_shard import TpShares, tp_shares
from vramtui.report.ranks_text import ranks_text

FIXTURES = Path(__file__).parent / "fixtures"
LLAMA = FIXTURES / "tiny-llama-tp.json"
QWEN2 = FIXTURES / "tiny-qwen2.json"


def shares(path: Path, tp: int) -> TpShares:
    """The shares computed here, from the meta model (the CLI asks a child process)."""
    import torch

    from vramtui.models.hf import meta_model, transformers_config

    config = transformers_config(json.loads(path.read_text()))
    return tp_shares(meta_model(config, torch.float32), tp)


def test_chunks_split_as_torch_chunk_splits() -> None:
    import torch

    from vramtui.predict.tp_shard import chunk_size

    for n, parts in ((257, 2), (10, 4), (3, 4), (64, 8)):
        pieces = torch.arange(n).chunk(parts)
        expected = [len(p) for p in pieces] + [0] * (parts - len(pieces))
        assert [chunk_size(n, parts, i) for i in range(parts)] == expected


def test_a_llama_rank_holds_half_of_the_sharded_weights_and_all_the_replicated() -> None:
    split = shares(LLAMA, 2)
    one = shares(LLAMA, 1)
    assert one.ranks[0].weights_bytes == split.whole_bytes  # tp 1: the whole model
    replicated = split.ranks[0].replicated_bytes
    # hidden 32: two norms a layer and the final norm, float32; the rotary buffers
    assert replicated > 5 * 32 * 4
    for rank in split.ranks:
        assert rank.replicated_bytes == replicated
        assert rank.weights_bytes == (split.whole_bytes - replicated) // 2 + replicated
        assert rank.kv_heads == 1  # 2 KV heads over 2 ranks
    assert "model.norm.weight" in split.replicated


def test_an_uneven_vocabulary_leaves_the_last_rank_a_row_less() -> None:
    split = shares(QWEN2, 2)  # vocab 257, tied embeddings, hidden 32
    first, second = split.ranks
    assert first.weights_bytes - second.weights_bytes == 32 * 4
    assert split.largest.rank == 0


def test_a_model_without_a_tp_plan_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(
        capsys,
        "run",
        "--config",
        str(TINY_CONFIG),
        "--tp",
        "2",
        "--device",
        "cpu",
        "--tokens",
        "4",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "opt has no tensor parallel plan" in err
    assert not list(tmp_path.iterdir())


def test_the_launcher_runs_standalone_on_one_node_and_takes_the_flags_unchanged() -> None:
    one = TpLaunch(2).command("python", "/logs")
    assert "--standalone" in one and one[one.index("--nproc-per-node") + 1] == "2"
    two = TpLaunch(4, 2, 1, "localhost:29400", 5).command("python", "/logs")
    at = two.index
    assert two[at("--nproc-per-node") + 1] == "2"
    assert two[at("--nnodes") + 1] == "2" and two[at("--node-rank") + 1] == "1"
    assert two[at("--rdzv-endpoint") + 1] == "localhost:29400"
    assert two[at("--rdzv-conf") + 1] == "timeout=5"
    assert two[-2:] == ["-m", "vramtui.measure.engine.tp_rank"]
    assert TpLaunch(4, 2, 1).first_rank == 2


@pytest.mark.parametrize(
    ("launch", "says"),
    [
        (TpLaunch(0), "--tp must be 1 or more"),
        (TpLaunch(3, 2, 0, "localhost:1234"), "does not split over --nnodes 2"),
        (TpLaunch(2, 2, 2, "localhost:1234"), "--node-rank 2 is not below"),
        (TpLaunch(2, 2, 0), "needs --rdzv-endpoint"),
        (TpLaunch(2, 2, 0, "nowhere"), "HOST:PORT"),
    ],
)
def test_launches_the_launcher_would_refuse_are_one_line(launch: TpLaunch, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        launch.check()


def test_a_rendezvous_port_in_use_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run_cli(
            capsys,
            "run",
            "--config",
            str(LLAMA),
            "--device",
            "cpu",
            "--tokens",
            "4",
            "--tp",
            "2",
            "--nnodes",
            "2",
            "--node-rank",
            "0",
            "--rdzv-endpoint",
            f"localhost:{port}",
            "--out",
            str(tmp_path),
        )
    assert code == 2 and out == ""
    assert (
        err.strip() == f"vramtui: --rdzv-endpoint localhost:{port}: port {port} is in use; "
        "pick a free port"
    )


# What torch's launcher printed when rank 1 was killed and rank 0 failed after it.
LAUNCHER_REPORT = """
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 31244)
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 31245)  (SIGKILL)
"""


def test_the_launchers_report_gives_each_failed_ranks_exit_code() -> None:
    assert exit_codes(LAUNCHER_REPORT) == {31244: 1, 31245: -9}


def test_a_launch_that_never_started_a_rank_reads_as_one_line() -> None:
    launch = TpLaunch(2, 2, 1, "localhost:29400", 3)
    timed_out = launch_failure(launch, "torch.distributed.DistStoreError: Timed out after 3 s")
    assert timed_out is not None and "rendezvous at localhost:29400 timed out after 3 s" in str(
        timed_out
    )
    in_use = launch_failure(launch, "RuntimeError: EADDRINUSE: address already in use")
    assert in_use is not None and "port in use" in str(in_use)
    assert launch_failure(launch, "ModuleNotFoundError: no module") is None


def test_a_rank_ended_because_another_died_says_so() -> None:
    cancelled = ev.Failed("cancelled", "cancelled", "decode", 3)
    broken = ev.Failed("error", "RuntimeError: [pair.cc:537] Connection reset by peer", "decode", 3)
    for failure in (cancelled, broken):
        assert peer_failure(failure) == ev.Failed("crashed", PEER_FAILED, "decode", 3)
    oom = ev.Failed("oom", "out of memory", "decode", 3)
    assert peer_failure(oom) is oom


def node_file(node: int, ranks: list[int], weights: list[int]) -> dict[str, object]:
    entries = [
        {
            "rank": r,
            "node_rank": node,
            "status": "completed",
            "failure": None,
            "weights_bytes": w,
            "predicted_weights_bytes": w,
            "kv_cache_bytes_final": 704,
            "peak_allocated_bytes": 1000 + w,
            "peak_reserved_bytes": None,
            "peak_nvml_process_bytes": None,
            "memory_source": "process RSS",
        }
        for r, w in zip(ranks, weights, strict=True)
    ]
    return {
        "model": "tiny-qwen2",
        "status": "completed",
        KEY: {
            "tp": 2,
            "nnodes": 2,
            "node_rank": node,
            "replicated_bytes": 672,
            "ranks": entries,
            "imbalance": imbalance(entries, 672),
        },
    }


def test_two_nodes_files_merge_by_rank() -> None:
    merged = merge([node_file(1, [1], [54176]), node_file(0, [0], [54304])])
    tp = merged[KEY]
    assert [r["rank"] for r in tp["ranks"]] == [0, 1] and tp["nodes"] == [0, 1]
    assert tp["node_rank"] == 0  # the lowest rank's file leads
    assert tp["imbalance"]["highest_peak_rank"] == 0
    assert tp["imbalance"]["weights_spread_bytes"] == 128
    assert any("uneven split" in why for why in tp["imbalance"]["why"])
    text = ranks_text(merged)
    assert "Tensor parallel: 2 ranks, 2 recorded here" in text
    assert "highest peak: rank 0" in text


def test_files_of_other_runs_or_a_rank_twice_do_not_merge() -> None:
    with pytest.raises(UsageError, match="rank 0 is in more than one file"):
        merge([node_file(0, [0], [1]), node_file(0, [0], [1])])
    other = node_file(1, [1], [1])
    other["model"] = "tiny-llama"
    with pytest.raises(UsageError, match="different runs"):
        merge([node_file(0, [0], [1]), other])
    with pytest.raises(UsageError, match="only tensor-parallel"):
        merge([node_file(0, [0], [1]), {"model": "x"}])


def test_estimate_tp_gives_each_ranks_weights_and_kv_share(
    capsys: pytest.CaptureFixture[str],
) -> None:
    estimate = ("estimate", "--config", str(LLAMA), "--device", "cpu", "--tokens", "4", "--tp", "2")
    code, out, err = run_cli(capsys, *estimate, "--json")
    assert code == 0, err
    tp = json.loads(out)["tensor_parallel"]
    assert [r["weights_bytes"] for r in tp["ranks"]] == [
        r.weights_bytes for r in shares(LLAMA, 2).ranks
    ]
    config = json.loads(LLAMA.read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    whole = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 4 * 11
    assert tp["whole_kv_cache_bytes_final"] == whole  # 8 prompt + 3 positions, float32
    assert [r["kv_cache_bytes_final"] for r in tp["ranks"]] == [whole // 2] * 2
    code, text, _ = run_cli(capsys, *estimate)
    assert code == 0 and "Tensor parallel estimate" in text and "KV cache at end" in text


def test_a_single_rank_has_no_imbalance_to_explain() -> None:
    assert imbalance([node_file(0, [0], [10])[KEY]["ranks"][0]], 672)["why"] == []  # type: ignore[index]


def test_a_lazy_checkpoint_tensor_hands_out_only_the_slice_asked_for() -> None:
    import torch

    from vramtui.measure.engine.tp_load import LazySlice

    lazy = LazySlice((257, 32), torch.float16, "cpu")
    assert lazy.get_shape() == [257, 32] and lazy.get_dtype() == "F16"
    part = lazy[129:257, :]
    assert part.shape == (128, 32) and part.untyped_storage().nbytes() == 128 * 32 * 2
    assert lazy[...].shape == (257, 32)


class EndedLauncher:
    """A launcher that ended before any rank connected, with this output."""

    def __init__(self, output: str) -> None:
        self.proc = type("Proc", (), {"returncode": 1})()
        self.output = output

    def log(self) -> str:
        return self.output

    def terminate(self) -> None:
        pass


def test_a_launcher_that_ends_before_any_rank_is_one_line_not_bad_input() -> None:
    from helpers import resolved, tiny_spec

    from vramtui.measure.ranks import NoRanks, RankRecorder

    def ended(output: str, cancel: bool = False) -> UsageError:
        recorder = RankRecorder(resolved(tiny_spec(tp=2)), TpLaunch(2), use_nvml=False)
        recorder._launcher = EndedLauncher(output)  # type: ignore[assignment]
        if cancel:
            recorder.cancel()
        with pytest.raises(UsageError) as raised:
            recorder._result()
        return raised.value

    crashed = ended("ModuleNotFoundError: No module named 'vramtui'")
    assert isinstance(crashed, NoRanks) and crashed.exit_code == 1
    assert "before any rank started: ModuleNotFoundError" in str(crashed)
    assert ended("", cancel=True).exit_code == 130
    assert ended("DistStoreError: Timed out after 600 s").exit_code == 2


def test_a_gpu_run_starts_no_more_ranks_on_a_node_than_it_has_gpus() -> None:
    from helpers import WITH_GPU, resolved, tiny_spec

    from vramtui.commands.run_tp import check_gpus

    on_gpu = resolved(tiny_spec(device="cuda:0"), WITH_GPU)
    check_gpus(on_gpu, TpLaunch(1), WITH_GPU)
    check_gpus(on_gpu, TpLaunch(2, 2, 0, "localhost:1234"), WITH_GPU)  # one rank a node
    with pytest.raises(UsageError, match="starts 2 ranks here, one a GPU, and this node has 1"):
        check_gpus(on_gpu, TpLaunch(2), WITH_GPU)
    on_cpu = resolved(tiny_spec(), WITH_GPU)
    check_gpus(on_cpu, TpLaunch(4), WITH_GPU)  # CPU ranks share the CPU


def test_a_ranks_memory_outside_the_allocator_is_nvml_less_reserved() -> None:
    from helpers import tiny_spec

    from vramtui.measure.rank_summary import rank_entry
    from vramtui.measure.session import NvmlSample, Session

    session = Session(tiny_spec(tp=2), t0=0.0)
    session.set_environment(tp_rank=1, tp_size=2, node_rank=0)
    session.apply(ev.Sample(0, 1.0, "prefill", 600, 1000, 700, None))
    session.add_nvml(NvmlSample(1.5, 1500, 2000, 8000))
    entry = rank_entry(session.snapshot(), 123)
    assert entry["rank"] == 1 and entry["predicted_weights_bytes"] == 123
    assert entry["peak_reserved_bytes"] == 1000 and entry["peak_nvml_process_bytes"] == 1500
    assert entry["outside_allocator_bytes"] == 500


def test_bench_tp_does_not_go_with_devices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "bench",
        "--config",
        str(LLAMA),
        "--tokens",
        "3",
        "--tp",
        "2",
        "--devices",
        "cpu,cpu",
    )
    assert code == 2 and out == ""
    assert (
        err.strip() == "vramtui: --tp runs each cell on N devices of its own; leave out --devices"
    )


def test_a_model_placed_off_the_ranks_device_is_refused_naming_the_parameter() -> None:
    import torch

    from vramtui.errors import UsageError
    from vramtui.measure.engine.tp_load import check_placed

    model = torch.nn.Linear(2, 2)  # on the CPU
    check_placed(model, torch.device("cpu"))
    with pytest.raises(UsageError, match="placed weight on cpu, not cuda:0"):
        check_placed(model, torch.device("cuda:0"))


def test_at_one_rank_the_model_is_built_as_a_one_device_run_builds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """transformers derives its tp_size from the launcher's WORLD_SIZE; at 1 it applies no
    plan and places nothing (on a GPU, a tp_plan load with no device_map left the model on
    the CPU; with the device named, its small blocks still came in another order than a
    one-device load's). A rank at world size 1 builds as the engine does without --tp;
    at 2 it loads under the plan."""
    from vramtui.measure.engine import engine_run, tp_load
    from vramtui.measure.engine.tp_rank import RankEngine
    from vramtui.runspec import RunSpec

    built: list[str] = []
    monkeypatch.setattr("vramtui.measure.engine.model.build", lambda *a: built.append("one"))
    monkeypatch.setattr(tp_load, "build_tp", lambda *a: built.append("tp"))
    engine = RankEngine(RunSpec(model="tiny", tp=1), lambda line: None)
    for world in ("1", "2"):
        monkeypatch.setenv("WORLD_SIZE", world)
        engine.build("cpu", "float32")
    assert built == ["one", "tp"]
    assert isinstance(engine, engine_run.Engine)
