from __future__ import annotations

import os
from pathlib import Path

import pytest

from vramtui.cli import main
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import SessionView
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun, RunSpec, resolve

TINY_CONFIG = Path(__file__).parent / "fixtures" / "tiny-opt.json"
# The devices tests run against: a CPU with 24 GB, 20 GB of it available.
CPU_ONLY = DeviceList((DeviceChoice("cpu", "Test CPU", 24 * 10**9, 20 * 10**9),))
H100 = DeviceChoice("cuda:0", "NVIDIA H100 80GB HBM3", 85_520_809_984, 84_000_000_000)
WITH_GPU = DeviceList((H100, *CPU_ONLY.choices))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`vramtui ARGS` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def pytest_configure(config: pytest.Config) -> None:
    """Traces (predict/tracing) are cached on disk: one fresh folder for the whole run,
    never the user's cache."""
    import tempfile

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="vramtui-test-cache-")


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same results whatever the user's shell says (NO_COLOR, TERM=dumb): tests
    that are about those set them themselves."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    if os.environ.get("TERM") in (None, "dumb"):
        monkeypatch.setenv("TERM", "xterm-256color")


def tiny_spec(**overrides: object) -> RunSpec:
    values: dict[str, object] = dict(
        model="tiny-opt", source="config", path=str(TINY_CONFIG), tokens=12, device="cpu"
    )
    values.update(overrides)
    return RunSpec(**values)  # type: ignore[arg-type]


def resolved(spec: RunSpec, devices: DeviceList = CPU_ONLY) -> ResolvedRun:
    return resolve(spec, devices)


def record(spec: RunSpec, **options: object) -> SessionView:
    """One real run of `spec` on the test devices: the finished session."""
    return Recorder(resolved(spec), **options).run().snapshot()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_session() -> SessionView:
    """One real run of the tiny model on the CPU, shared by read-only tests."""
    return record(tiny_spec())
