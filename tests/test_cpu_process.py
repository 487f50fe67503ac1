"""The Python process's own RSS in a CPU estimate (predict/cpu_process.py): the figure
for the torch build installed, found from torch's package metadata."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from helpers import run_cli

from vramtui.predict import cpu_process as cp


def fake_torch(monkeypatch: pytest.MonkeyPatch, version: str | None, requires: list[str]) -> None:
    def version_of(name: str) -> str:
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(cp.metadata, "version", version_of)
    monkeypatch.setattr(cp.metadata, "requires", lambda name: requires)
    cp.cpu_process.cache_clear()


@pytest.fixture(autouse=True)
def _fresh() -> object:
    yield
    cp.cpu_process.cache_clear()


def test_the_torch_build_is_read_from_its_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch(monkeypatch, "2.13.0+cpu", [])
    assert cp.torch_is_cuda_build() is False and cp.cpu_process() == cp.CPU_TORCH
    fake_torch(monkeypatch, "2.14.1", ['nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"'])
    assert cp.torch_is_cuda_build() is True and cp.cpu_process() == cp.CUDA_TORCH
    fake_torch(monkeypatch, "2.11.0+cu130", [])
    assert cp.torch_is_cuda_build() is True
    fake_torch(monkeypatch, "2.9.1", ["filelock", "sympy"])  # macOS or aarch64: CPU only
    assert cp.torch_is_cuda_build() is False
    fake_torch(monkeypatch, None, [])
    assert cp.torch_is_cuda_build() is None and cp.cpu_process() == cp.CPU_TORCH


def test_a_cpu_estimate_adds_the_process_of_the_installed_torch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("estimate", "--model", "opt-125m", "--device", "cpu", "-n", "20")
    totals = {}
    for build, figure in (("2.13.0+cpu", cp.CPU_TORCH), ("2.14.1+cu130", cp.CUDA_TORCH)):
        fake_torch(monkeypatch, build, [])
        code, out, _ = run_cli(capsys, *args, "--json")
        data = json.loads(out)
        assert code == 0 and data["cpu_process_bytes"] == figure.bytes
        totals[build] = data["peak_allocated_bytes"] + figure.bytes
        code, out, _ = run_cli(capsys, *args)
        assert figure.source in out and "peak RSS" in out and "CUDA context" not in out
    assert totals["2.14.1+cu130"] - totals["2.13.0+cpu"] == 444_000_000


def test_only_a_cpu_estimate_shows_the_python_process() -> None:
    from vramtui.models.catalogue import CATALOGUE
    from vramtui.predict.estimator import estimate
    from vramtui.report.estimate_text import estimate_rows

    model = CATALOGUE["opt-125m"].opt
    rows = {b: [r[0] for r in estimate_rows(estimate(model, backend=b))] for b in ("cpu", "mps")}
    assert rows["cpu"][-3:] == ["tensors (peak)", "Python process", "peak RSS"]
    assert "Python process" not in rows["mps"] and "peak allocated" in rows["mps"]
