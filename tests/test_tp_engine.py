"""Tensor parallel for real on the CPU: `--tp 2` under torch's launcher with gloo, a tiny
Llama and a tiny Qwen2, each rank recorded; two local "nodes"; a rank that dies; Ctrl+C;
a rendezvous that times out. Each test starts a launcher and two engine ranks."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from helpers import resolved, run_cli, tiny_spec

from vramtui.measure.rank_summary import KEY
from vramtui.measure.ranks import PEER_FAILED, RankRecorder
from vramtui.measure.tp_launch import TpLaunch
from vramtui.predict.tp_shard import tp_shares

pytestmark = pytest.mark.engine

FIXTURES = Path(__file__).parent / "fixtures"
PROMPT, TOKENS = 8, 4


def config_args(name: str, tokens: int = TOKENS) -> list[str]:
    path = FIXTURES / fixture_name(name)
    return ["--config", str(path), "--device", "cpu", "--tokens", str(tokens), "--quiet"]


def fixture_name(name: str) -> str:
    """The tiny config of a family (Llama's: a 32-wide one kept for tensor parallel)."""
    return "tiny-llama-tp.json" if name == "llama" else f"tiny-{name}.json"


def predicted(name: str) -> list[int]:
    """Each rank's weights by the plan, computed here from the meta model."""
    import torch

    from vramtui.models.hf import meta_model, transformers_config

    config = transformers_config(json.loads((FIXTURES / fixture_name(name)).read_text()))
    return [r.weights_bytes for r in tp_shares(meta_model(config, torch.float32), 2).ranks]


def kv_share(config: dict[str, int], positions: int) -> int:
    """One rank's KV cache: its half of the KV heads, float32, keys and values."""
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    heads = config["num_key_value_heads"] // 2
    return 2 * config["num_hidden_layers"] * heads * head_dim * 4 * positions


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_tp_2_records_every_rank_and_each_rank_holds_its_predicted_share(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json, out_csv = tmp_path / "run.json", tmp_path / "run.csv"
    code, out, err = run_cli(
        capsys,
        "run",
        *config_args(name),
        "--tp",
        "2",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
        "--out",
        str(tmp_path / "sessions"),
    )
    assert code == 0, err
    saved = json.loads(out_json.read_text())
    ranks = saved[KEY]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["status"] == "completed" and r["tokens_generated"] == TOKENS for r in ranks)
    # the per-rank estimate of the weights, exact against what each rank measured
    assert [r["weights_bytes"] for r in ranks] == predicted(name)
    assert [r["predicted_weights_bytes"] for r in ranks] == predicted(name)
    config = json.loads((FIXTURES / fixture_name(name)).read_text())
    positions = PROMPT + TOKENS - 1  # the last step's cache, before its token is appended
    assert [r["kv_cache_bytes_final"] for r in ranks] == [kv_share(config, positions)] * 2
    assert all(r["peak_allocated_bytes"] > r["weights_bytes"] for r in ranks)
    rows = list(csv.DictReader(out_csv.open()))
    for rank in ("0", "1"):
        tokens = {row["token"] for row in rows if row["rank"] == rank and row["token"]}
        assert tokens == {str(t) for t in range(TOKENS)}
    assert "Tensor parallel: 2 ranks, 2 recorded here" in out
    code, shown, _ = run_cli(capsys, "show", str(out_json))
    assert code == 0 and "rank  node  status" in shown and "\n1     0     completed" in shown
    code, shown, _ = run_cli(capsys, "show", str(out_csv))  # rank 0's peaks, then the others
    assert code == 0 and "the other ranks:" in shown and "\n1     " in shown


def node_args(node: int, endpoint: str) -> list[str]:
    """One of two nodes of a --tp 2 run, one rank each."""
    return ["--tp", "2", "--nnodes", "2", "--node-rank", str(node), "--rdzv-endpoint", endpoint]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vramtui(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vramtui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_two_local_nodes_each_record_their_rank_and_the_files_merge(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    endpoint = f"localhost:{free_port()}"
    nodes = [
        vramtui(
            "run",
            *config_args("llama"),
            *node_args(node, endpoint),
            "--json",
            str(tmp_path / f"{node}.json"),
            "--out",
            str(tmp_path / f"sessions{node}"),
        )
        for node in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err
    for node in (0, 1):
        ranks = json.loads((tmp_path / f"{node}.json").read_text())[KEY]["ranks"]
        assert [(r["rank"], r["node_rank"]) for r in ranks] == [(node, node)]
    code, out, _ = run_cli(capsys, "show", str(tmp_path / "1.json"), str(tmp_path / "0.json"))
    assert code == 0
    assert "Tensor parallel: 2 ranks, 2 recorded here" in out
    assert "\n0     0     completed" in out and "\n1     1     completed" in out


def test_a_rank_that_dies_ends_the_other_and_every_sample_is_kept() -> None:
    spec = tiny_spec(model="tiny-llama", path=str(FIXTURES / "tiny-llama-tp.json"), tokens=8, tp=2)
    crash = {"VRAMTUI_TEST_CRASH_AT_TOKEN": "2", "VRAMTUI_TEST_CRASH_RANK": "1"}
    ranks = RankRecorder(resolved(spec), TpLaunch(2), extra_env=crash, use_nvml=False).run()
    dead, other = ranks.views[1], ranks.views[0]
    assert dead.failure is not None and dead.failure.kind == "crashed"
    assert "code -9" in dead.failure.message
    assert [s.token for s in dead.token_samples] == [0, 1]
    assert other.failure is not None and other.failure.message == PEER_FAILED
    assert [s.token for s in other.token_samples][:2] == [0, 1]
    assert all(not psutil.pid_exists(v.environment.engine_pid or 0) for v in (dead, other))


def test_ctrl_c_stops_every_rank(tmp_path: Path) -> None:
    run = vramtui(
        "run",
        *config_args("llama", tokens=100)[:-1],
        "--tp",
        "2",
        "--json",
        str(tmp_path / "run.json"),
        "--out",
        str(tmp_path / "sessions"),
        env={"VRAMTUI_TEST_STEP_SLEEP": "0.2"},
    )
    assert run.stderr is not None
    for line in run.stderr:  # the progress line, once the ranks decode
        if "decode" in line:
            break
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=120)
    assert run.returncode == 130
    ranks = json.loads((tmp_path / "run.json").read_text())[KEY]["ranks"]
    assert [r["status"] for r in ranks] == ["cancelled", "cancelled"]
    assert all(r["tokens_generated"] >= 1 for r in ranks)
    assert not any(psutil.pid_exists(r["pid"]) for r in ranks)


def test_a_rendezvous_that_times_out_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    endpoint = f"localhost:{free_port()}"  # node 0 never comes
    code, out, err = run_cli(
        capsys,
        "run",
        *config_args("llama"),
        *node_args(1, endpoint),
        "--rdzv-timeout",
        "2",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and out == ""
    assert err.strip() == (
        f"vramtui: rendezvous at {endpoint} timed out after 2 s: not every node joined (2 expected)"
    )


def test_the_parent_of_a_tp_run_never_imports_torch() -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        import vramtui.commands.run_tp, vramtui.measure.ranks
        from vramtui.predict.tp_shard import shares_for
        config = json.loads(open({str(FIXTURES / "tiny-llama-tp.json")!r}).read())
        shares = shares_for(config, "float32", 2)
        print("RANKS", len(shares.ranks))
        print("IMPORTED", [m for m in ("torch", "transformers") if m in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "RANKS 2" in out.stdout and "IMPORTED []" in out.stdout


def test_bench_tp_records_each_cell_through_the_launcher(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vramtui.units import format_bytes

    code, out, err = run_cli(capsys, "bench", *config_args("llama")[:-1], "--tp", "2")
    assert code == 0, err
    assert "--tp 2, each cell's figures are its rank 0's" in err
    row = next(line for line in out.splitlines() if line.startswith("tiny-llama"))
    assert format_bytes(predicted("llama")[0], 2) in row


def test_a_checkpoint_loads_sharded_as_the_random_weights_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    from vramtui.models.hf import transformers_config

    config = transformers_config(json.loads((FIXTURES / "tiny-llama-tp.json").read_text()))
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "ckpt")
    out_json = tmp_path / "run.json"
    code, _, err = run_cli(
        capsys,
        "run",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--device",
        "cpu",
        "--tokens",
        str(TOKENS),
        "--quiet",
        "--tp",
        "2",
        "--json",
        str(out_json),
        "--out",
        str(tmp_path / "s"),
    )
    assert code == 0, err
    ranks = json.loads(out_json.read_text())[KEY]["ranks"]
    assert [r["weights_bytes"] for r in ranks] == predicted("llama")
    assert [r["predicted_weights_bytes"] for r in ranks] == predicted("llama")
