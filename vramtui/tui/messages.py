"""Messages worker threads post to the app and its screens (post_message is thread-safe).

Dataclasses: Textual's Message initialises itself in `__post_init__`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from vramtui.runspec import DeviceList
    from vramtui.tui.prediction import StartPrediction
    from vramtui.tui.run_state import ActiveRun


@dataclass
class RunFinished(Message):
    """The engine has ended (completed, failed or cancelled) and the session is final."""

    run: ActiveRun
    error: str | None = None


@dataclass
class DevicesFound(Message):
    """NVML and the platform have said which devices there are."""

    devices: DeviceList


@dataclass
class PredictionReady(Message):
    """The estimate of the form's run, made off the UI thread; `key` says which run."""

    key: object
    prediction: StartPrediction
