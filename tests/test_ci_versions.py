"""The versions a CI run prints: those vramtui depends on, as installed."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / ".ci" / "versions.py"


def test_ci_prints_the_installed_version_of_each_dependency() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("versions tested: python ")
    for name in ("torch", "transformers", "accelerate", "textual", "pytest"):
        assert f"  {name} {metadata.version(name)}" in lines
    assert f"transformers=={metadata.version('transformers')}" in lines[-1]
