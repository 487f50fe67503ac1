"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


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
