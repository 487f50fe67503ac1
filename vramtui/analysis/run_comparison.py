"""Two or more runs side by side: which settings set them apart, and each series' peak.

Pure: reads SessionViews (saved sessions read back by report.saved); how a comparison
reads (the tables, the change from the first) is report/comparison_text.py. Each
session is named by what sets it apart from the others (attn=eager, batch=8, torch
2.11...), so a table of two runs that differ in one choice says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vramtui.measure.session import SessionView
from vramtui.runspec.train_spec import TrainSpec

# The series a comparison lines up, in this order.
SERIES = ("nvml_process", "reserved", "allocated", "step_peak")
# What may set two runs apart: spec fields, then the versions in the environment.
_SPEC_KEYS: tuple[str, ...] = (
    "model",
    "source",
    "tokens",
    "prompt_tokens",
    "batch",
    "dtype",
    "attn",
    "cache",
)
_SPEC_KEYS += ("device", "cudnn_sdpa", "cap_bytes")
# A training run's recipe (its model's choices are the keys above, read from its base).
_TRAIN_KEYS = (
    "method",
    "seq",
    "steps",
    "grad_accum",
    "optim",
    "grad_checkpointing",
    "lora_r",
    "lora_alpha",
    "lora_targets",
)
_ENV_KEYS = ("device_name", "torch", "transformers", "driver", "cuda_alloc_conf")


@dataclass(frozen=True)
class Compared:
    """One session in a comparison, with the name it goes by."""

    label: str
    view: SessionView
    path: Path | None = None


def _setting(view: SessionView, key: str) -> object:
    spec = view.spec
    if key in _TRAIN_KEYS:
        return getattr(spec, key) if isinstance(spec, TrainSpec) else None
    if key in _SPEC_KEYS:
        if key == "dtype" and view.loaded is not None:
            return view.loaded.dtype  # the dtype the run resolved to, not None
        if key == "device" and view.environment.device:
            return view.environment.device  # the device the run used, not "auto"
        model = spec.base if isinstance(spec, TrainSpec) else spec  # a training run's model
        return getattr(model, key, None)  # a program's spec has none of a run's choices
    return getattr(view.environment, key)


def differences(views: list[SessionView]) -> list[str]:
    """The settings that are not the same in every session."""
    keys = _SPEC_KEYS + _TRAIN_KEYS + _ENV_KEYS
    return [k for k in keys if len({repr(_setting(v, k)) for v in views}) > 1]


def labelled(
    views: list[SessionView], paths: Sequence[Path | None] | None = None
) -> list[Compared]:
    """Each session named by the settings that set it apart (its file name where none do)."""
    paths = paths or [None] * len(views)
    keys = differences(views)
    out = []
    for n, (view, path) in enumerate(zip(views, paths, strict=True)):
        parts = [f"{k}={_setting(view, k)}" for k in keys]
        label = " ".join(parts) if parts else (path.stem if path else f"run {n + 1}")
        out.append(Compared(label, view, path))
    if len({c.label for c in out}) < len(out):  # same settings: tell them apart by number
        out = [Compared(f"{n + 1}: {c.label}", c.view, c.path) for n, c in enumerate(out)]
    return out


def peak_of(view: SessionView, name: str) -> int | None:
    if name == "allocated":
        peak = view.peak_allocated()
    else:
        peak = view.peaks.get(name)
    return peak.value if peak else None
