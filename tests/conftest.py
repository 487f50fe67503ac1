"""Fixtures for every test file; what test files share besides fixtures is in helpers.py."""

from __future__ import annotations

import os

import pytest
from helpers import record, tiny_spec

from vramtui.measure.session import Session


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


@pytest.fixture(scope="session")
def tiny_session() -> Session:
    """One real run of the tiny model on the CPU, shared by read-only tests."""
    return record(tiny_spec())
