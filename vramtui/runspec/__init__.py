"""What to run: the RunSpec, the sources and devices it names, and `resolve()`.

Pure Python: below everything that measures, predicts or shows a run.
"""

from vramtui.runspec.device_choice import DeviceChoice, DeviceList
from vramtui.runspec.resolve import ResolvedRun, resolve
from vramtui.runspec.run_spec import (
    ALLOC_CONF,
    ATTENTION,
    CACHES,
    DTYPES,
    SOURCES,
    RunSpec,
    expandable_segments,
    model_label,
    resolve_dtype,
)

__all__ = [
    "ALLOC_CONF",
    "ATTENTION",
    "CACHES",
    "DTYPES",
    "SOURCES",
    "DeviceChoice",
    "DeviceList",
    "ResolvedRun",
    "RunSpec",
    "expandable_segments",
    "model_label",
    "resolve",
    "resolve_dtype",
]
