"""vramtui: a live GPU-memory profiler for transformer text generation."""

from __future__ import annotations

__version__ = "0.1.0"
