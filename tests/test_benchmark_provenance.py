"""benchmarks/_common.write_json stamps every result with what made it: the command line,
the git commit (and whether the tree had changes), the versions and the GPUs."""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMON = ROOT / "benchmarks" / "_common.py"


def load_common() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_common", COMMON)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def common() -> types.ModuleType:
    return load_common()


def fake_pynvml(names: list[str | bytes], *, init_error: bool = False) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    def init() -> None:
        if init_error:
            raise RuntimeError("NVML Shared Library Not Found")

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: b"999.1"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(names)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda handle: names[handle]  # type: ignore[attr-defined]
    return mod


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_write_json_keeps_the_data_and_stamps_command_commit_and_versions(
    common: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["benchmarks/probe.py", "--out", str(tmp_path)])
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(["NVIDIA H200", b"NVIDIA H100"]))
    path = tmp_path / "nested" / "result.json"

    common.write_json(path, {"figure": 42, "cells": [1, 2]})

    written: dict[str, Any] = json.loads(path.read_text())
    assert written["figure"] == 42 and written["cells"] == [1, 2]
    stamp = written["provenance"]
    assert stamp["command"] == ["benchmarks/probe.py", "--out", str(tmp_path)]
    assert stamp["git"]["commit"] == git(ROOT, "rev-parse", "HEAD")
    assert isinstance(stamp["git"]["dirty"], bool)
    versions = stamp["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["transformers"] == metadata.version("transformers")
    assert versions["torch"] == metadata.version("torch")
    assert set(versions) == {"python", "torch", "transformers", "accelerate", "vramtui"}
    assert stamp["gpus"] == ["NVIDIA H200", "NVIDIA H100"]
    assert stamp["driver"] == "999.1"
    assert not list(path.parent.glob("*.partial"))


def test_a_fresh_stamp_replaces_one_already_in_the_data(
    common: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["second.py"])
    path = tmp_path / "r.json"
    common.write_json(path, {"provenance": {"command": ["first.py"]}, "x": 1})
    written = json.loads(path.read_text())
    assert written["provenance"]["command"] == ["second.py"]
    assert list(written) == ["provenance", "x"]


def test_no_gpu_and_no_nvml_give_none(
    common: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], init_error=True))
    assert common.gpu_names() == {"gpus": None, "driver": None}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([]))
    assert common.gpu_names() == {"gpus": None, "driver": "999.1"}


def test_a_package_not_installed_is_none(
    common: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "PACKAGES", ("torch", "no-such-package-vramtui-test"))
    versions = common.package_versions()
    assert versions["no-such-package-vramtui-test"] is None
    assert versions["torch"] == metadata.version("torch")


def test_git_state_says_whether_the_tree_had_changes(
    common: types.ModuleType, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert common.git_state(repo) == {"commit": head, "dirty": False}
    (repo / "a.txt").write_text("two\n")
    assert common.git_state(repo) == {"commit": head, "dirty": True}


def test_git_state_is_none_without_git_or_outside_a_repository(
    common: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert common.git_state(outside) == {"commit": None, "dirty": None}
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert common.git_state(ROOT) == {"commit": None, "dirty": None}


def test_stamping_imports_no_torch(tmp_path: Path) -> None:
    """A CPU-only script stays torch-free (and so CUDA-free) when it writes its result."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "from pathlib import Path\n"
        "import _common\n"
        f"_common.write_json(Path({str(tmp_path / 'r.json')!r}), {{'a': 1}})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert json.loads((tmp_path / "r.json").read_text())["a"] == 1
