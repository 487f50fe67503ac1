"""Fixtures for every test file; what test files share besides fixtures is in helpers.py."""

from __future__ import annotations

import os

import pytest
from helpers import record, tiny_spec

from vramtui.measure.session import SessionView


def pytest_configure(config: pytest.Config) -> None:
    """Traces (predict/tracing) are cached on disk: one fresh folder for the whole run,
    never the user's cache."""
    import tempfile

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="vramtui-test-cache-")


# Fixtures that make a real run: a test that uses one is an engine test.
ENGINE_FIXTURES = {"tiny_session"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers (pyproject.toml): `engine` on a test that uses a real run's fixture, and
    `slow` on every engine test, so that `pytest -m "not slow"` starts no process that
    imports torch."""
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)
        if item.get_closest_marker("engine") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same results whatever the user's shell says (NO_COLOR, TERM=dumb): tests
    that are about those set them themselves."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    if os.environ.get("TERM") in (None, "dumb"):
        monkeypatch.setenv("TERM", "xterm-256color")


@pytest.fixture(scope="session")
def tiny_session() -> SessionView:
    """One real run of the tiny model on the CPU, shared by read-only tests."""
    return record(tiny_spec())


@pytest.fixture
def no_textual(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the app fails the test: flags are checked, and refused, before Textual starts."""
    import vramtui.tui.app as tui_app

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the app started")

    monkeypatch.setattr(tui_app, "VramApp", refuse)
