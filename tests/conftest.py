from __future__ import annotations

from pathlib import Path

import pytest

from vramtui.recorder import Recorder
from vramtui.session import Session
from vramtui.spec import RunSpec

TINY_CONFIG = Path(__file__).parent / "fixtures" / "tiny-opt.json"


def tiny_spec(**overrides: object) -> RunSpec:
    values: dict[str, object] = dict(
        model="tiny-opt", source="config", path=str(TINY_CONFIG), tokens=12, device="cpu"
    )
    values.update(overrides)
    return RunSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_session() -> Session:
    """One real run of the tiny model on the CPU, shared by read-only tests."""
    return Recorder(tiny_spec()).run()
