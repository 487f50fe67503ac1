"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # a script run from benchmarks/ finds this checkout's vramtui
    sys.path.insert(0, str(REPO))

from vramtui.provenance import git_state as provenance_git_state  # noqa: E402

# The packages a result's figures depend on, read from their metadata (nothing is imported).
PACKAGES = ("torch", "transformers", "accelerate", "vramtui")


def per_call_us(fn: Any, n: int = 2000) -> float:
    """Microseconds a call of `fn`, after 50 warm-up calls."""
    for _ in range(50):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def gpu_environment() -> dict[str, Any]:
    """Device, driver and library versions, read in a child so this process stays torch-free."""
    code = (
        "import json, sys, torch, transformers\n"
        "d = {'torch': torch.__version__, 'transformers': transformers.__version__,\n"
        "     'cuda_runtime': torch.version.cuda, 'python': sys.version.split()[0]}\n"
        "if torch.cuda.is_available():\n"
        "    d['gpu'] = torch.cuda.get_device_name(0)\n"
        "    d['gpu_total_bytes'] = torch.cuda.get_device_properties(0).total_memory\n"
        "print(json.dumps(d))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = json.loads(out.stdout)
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        env["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    except Exception as exc:  # no NVML on this machine
        env["driver"] = f"unavailable ({exc})"
    from vramtui import __version__

    env["vramtui"] = __version__
    env["platform"] = platform.platform()
    return env


def environment_line(env: dict[str, Any]) -> str:
    return (
        f"{env.get('gpu', 'CPU')}, driver {env.get('driver')}, torch {env.get('torch')}, "
        f"transformers {env.get('transformers')}, CUDA runtime {env.get('cuda_runtime')}, "
        f"vramtui {env.get('vramtui')}"
    )


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out in `repo` and whether its tree had changes (None: no git)."""
    state = provenance_git_state(repo)
    return {"commit": state.commit, "dirty": state.dirty}


def package_versions(packages: tuple[str, ...] | None = None) -> dict[str, str | None]:
    """Python's version and each package's installed version (None: not installed), of
    `packages` (default: PACKAGES)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES if packages is None else packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gpu_names() -> dict[str, Any]:
    """The GPUs' names and the driver, from NVML (no CUDA context); None where none answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # nvidia-ml-py not installed, or no NVIDIA driver
        return {"gpus": None, "driver": None}
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [pynvml.nvmlDeviceGetName(handle) for handle in handles]
    except Exception:
        return {"gpus": None, "driver": None}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return {"gpus": [_text(n) for n in names] or None, "driver": _text(driver)}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def provenance() -> dict[str, Any]:
    """What made a result: the command line as run, the git commit, the versions and GPUs."""
    return {
        "command": list(sys.argv),
        "python_executable": sys.executable,
        "git": git_state(),
        "versions": package_versions(),
        **gpu_names(),
        "platform": platform.platform(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def stamped(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with a fresh provenance under the key "provenance" (first, so a reader sees it)."""
    out: dict[str, Any] = {"provenance": provenance()}
    out.update((key, value) for key, value in data.items() if key != "provenance")
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a result as JSON, stamped with the command, commit and versions that made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(stamped(data), indent=2) + "\n")
    os.replace(partial, path)  # a reader never sees half a file, nor loses the previous one


def run_command(model: str, tokens: int, folder: Path, *extra: str) -> list[str]:
    """`vramtui run` of this interpreter, quiet, writing folder/run.csv and folder/run.json."""
    return [
        sys.executable,
        "-m",
        "vramtui",
        "run",
        "--model",
        model,
        "--tokens",
        str(tokens),
        *extra,
        "--csv",
        str(folder / "run.csv"),
        "--json",
        str(folder / "run.json"),
        "-q",
    ]
