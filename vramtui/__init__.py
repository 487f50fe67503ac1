"""vramtui: a live GPU-memory profiler for transformer text generation."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "track"]


def __getattr__(name: str) -> Any:
    # `vramtui.track` loads the recorder only when asked for: the app and the
    # commands import `vramtui` and must not pay for it.
    if name == "track":
        from vramtui.tracking import track

        return track
    raise AttributeError(f"module 'vramtui' has no attribute {name!r}")
