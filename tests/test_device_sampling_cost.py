"""benchmarks/device_sampling_cost.py: it refuses cleanly without CUDA, and what it can
measure on a CPU (the RSS probe, NVML's absence) reads in its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "device_sampling_cost.py"
sys.path.insert(0, str(SCRIPT.parent))


@pytest.mark.engine
def test_without_cuda_it_says_so_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["device_sampling_cost: needs a CUDA GPU (torch sees none here)"]
    assert not (tmp_path / "out").exists()


def test_the_cpu_probe_is_measured_and_reported() -> None:
    import device_sampling_cost as bench

    cpu = bench.cpu_probe_cost(held_bytes=64 * 2**20)
    assert cpu["read_reset_us"] > 0 and cpu["read_reset_us_held"] > 0
    assert cpu["rss_bytes_held"] >= cpu["rss_bytes"] + 60 * 2**20  # the 64 MiB is resident
    env = {"gpu": "none", "torch": torch.__version__}
    text = bench.markdown({"environment": env, "step": [], "cpu_probe": cpu,
                           "nvml": {"unavailable": "no NVIDIA driver"}})  # fmt: skip
    assert f"{cpu['read_reset_us']:.1f} µs" in text and "NVML: no NVIDIA driver" in text


@pytest.mark.slow
def test_the_per_step_sample_is_timed_for_each_count_of_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The GPU's probe stood in for by the CPU's: the code path, not its figures."""
    import device_sampling_cost as bench

    from vramtui.measure.engine import probes

    monkeypatch.setattr(probes, "CudaProbe", lambda index: probes.CpuProbe())
    steps = bench.step_costs()
    assert [(s["gpus"], s["cpu"]) for s in steps] == [(0, False)] + [
        (n, cpu) for n in bench.COUNTS for cpu in (False, True)
    ]
    assert all(s["step_us"] > 0 for s in steps)


@pytest.mark.engine
def test_a_placed_run_is_read_back_with_its_devices() -> None:
    import device_sampling_cost as bench

    done = bench.one_run("opt-125m", 2, ("--device-map", "auto", "--max-memory", "cpu=4GiB"), 240)
    assert done["rc"] == 0, done
    assert done["tokens"] == 2 and done["decode_tokens_per_s"] > 0
    assert [d["device"] for d in done["devices"]] == ["cpu"]
    assert done["devices"][0]["peak_allocated_bytes"] > 0
