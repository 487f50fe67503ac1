"""What the screens ask of the app that shows them: the AppHost protocol VramApp
implements, and `host_of(screen)`, the screen's app as one.

The screens import this, not the app (which imports them), so a screen's calls to
its app are typed and the imports stay one-way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from textual.screen import Screen

from vramtui.measure.script.program_process import Program
from vramtui.runspec import DeviceList, ResolvedRun
from vramtui.runspec.train_spec import TrainSpec


@runtime_checkable
class AppHost(Protocol):
    """The app behind the start, run and summary screens."""

    clock: Callable[[], float]  # the run's clock (a replay's own)
    list_devices: Callable[[], DeviceList]  # the devices the start screen offers

    @property
    def save_dir(self) -> Path:
        """Where sessions are saved."""
        ...

    def begin(self, run: ResolvedRun) -> None:
        """Start measuring `run` on the run screen."""
        ...

    def begin_program(self, program: Program) -> None:
        """Start profiling `program` on the run screen."""
        ...

    def start_training(self, spec: TrainSpec) -> None:
        """Start measuring the fine-tuning run `spec` (its model resolved and checked by
        the start form)."""
        ...

    def cancel_run(self) -> None: ...

    def action_summary(self) -> None: ...

    def action_export(self) -> None: ...

    def action_run_again(self) -> None: ...


def host_of(screen: Screen[Any]) -> AppHost:
    """The app showing `screen`, as the AppHost it must be."""
    app = screen.app
    if not isinstance(app, AppHost):
        raise TypeError(f"{type(app).__name__} cannot show {type(screen).__name__}")
    return app
