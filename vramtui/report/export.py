"""Write a session as a tidy CSV (one row per sample) and a JSON summary, atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure.session import SessionView, step_phase
from vramtui.measure.summary_format import summary

CSV_COLUMNS = (
    "t_s",
    "source",
    "token",
    "phase",
    "allocated_bytes",
    "reserved_bytes",
    "step_peak_bytes",
    "kv_cache_bytes",
    "nvml_process_bytes",
    "nvml_device_used_bytes",
    "nvml_device_total_bytes",
    "generation",  # the profiled program's generate() call (empty outside one)
    # the device a row measures: the run's device; a placed model's other devices have
    # engine rows of their own (allocated, reserved, step peak; the CPU's are its RSS)
    "device",
)
# Files written before the device column, and before the generation column; `vramtui
# show` reads all three.
CSV_COLUMNS_V2 = CSV_COLUMNS[:-1]
# A tensor-parallel run's CSV: every rank's rows, each with its rank in a last column.
CSV_COLUMNS_RANKS = (*CSV_COLUMNS, "rank")
CSV_COLUMNS_V1 = CSV_COLUMNS[:-2]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Keep a user-supplied string from starting a spreadsheet formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def check_writable(path: str | Path, *, force: bool = False) -> Path:
    """Fail early (before any model is built) if `path` cannot be written."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"export path is a folder, not a file: {path}")
    if target.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {parent} is not writable")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, text: str) -> Path:
    """Write to a temporary file in the same folder, then rename over the target.

    The file gets the permissions a plain open() would give it (0666 less the
    umask, so 0644 usually), not mkstemp's 0600."""
    target = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def _t(value: float, t0: float) -> str:
    return f"{value - t0:.6f}"


def csv_text(view: SessionView) -> str:
    rows: list[tuple[float, list[Any]]] = []
    t0 = view.t0
    device = view.environment.device
    for s in view.samples:
        rows.append(
            (
                s.t,
                [
                    _t(s.t, t0),
                    "engine",
                    s.token,
                    step_phase(s),  # token 0's step is the prefill
                    s.allocated,
                    s.reserved,
                    s.step_peak,
                    s.kv_bytes,
                    None,
                    None,
                    None,
                    view.generation_of(s.token, s.t),
                    device,
                ],
            )
        )
        rows.extend((s.t, row) for row in _device_rows(s, t0) if row[-1] != device)
    for name in (None, *view.device_nvml):  # the run's own GPU; a placed model's others
        rows.extend((n.t, _nvml_row(view, n, token, phase, name or device))
                    for n, token, phase in view.nvml_rows(name))  # fmt: skip
    rows.sort(key=lambda r: r[0])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for _, row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def _nvml_row(
    view: SessionView, n: Any, token: int | None, phase: str, device: str | None
) -> list[Any]:
    return [
        _t(n.t, view.t0),
        "nvml",
        token,
        phase,
        None,
        None,
        None,
        None,
        n.process_bytes,
        n.device_used,
        n.device_total,
        view.generation_of(None, n.t),
        device,
    ]


def _device_rows(s: Any, t0: float) -> list[list[Any]]:
    """A placed model's sample, one row per device it measured (the run's own device is
    the main row already)."""
    return [
        [
            _t(s.t, t0),
            "engine",
            s.token,
            step_phase(s),
            allocated,
            reserved,
            peak,
            None,
            None,
            None,
            None,
            None,
            name,
        ]  # fmt: skip
        for name, allocated, reserved, peak in s.devices or ()
    ]


def json_text(session: SessionView) -> str:
    return json.dumps(summary(session), indent=2, sort_keys=False, default=str) + "\n"


def write_csv(session: SessionView, path: str | Path) -> Path:
    return atomic_write(path, csv_text(session))


def write_json(session: SessionView, path: str | Path) -> Path:
    return atomic_write(path, json_text(session))
