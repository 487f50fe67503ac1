"""Byte sizes: formatting for people, parsing what people type."""

from __future__ import annotations

import re

from vramtui.errors import UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, *, field: str | None = None, need_unit: bool = False) -> int:
    """Parse '80GB', '80 GiB', '79.6G', '1024B' into bytes.

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB,
    GiB, TiB) powers of 1024, as on the NVIDIA data sheets and in nvidia-smi.
    `need_unit`: a bare number is refused (80 is more likely 80 GB than 80 bytes).
    """
    match = _SIZE.match(text)
    example = "write e.g. 80GB, 79.6GiB or 24000MB"
    if not match or match.group(2).lower() not in _UNITS:
        raise UsageError(f"not a size: {text!r} ({example})", field=field)
    if need_unit and not match.group(2):
        raise UsageError(f"a size needs a unit: {text!r} ({example})", field=field)
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise UsageError(f"size must be positive: {text!r}", field=field)
    return int(value)


def format_bytes(value: float | int | None, precision: int = 1) -> str:
    """Decimal units, as NVIDIA and the rule of thumb use them: 2.6 GB, 642 MB."""
    if value is None:
        return "–"
    sign = "-" if value < 0 else ""
    value = abs(float(value))
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{sign}{value / scale:.{precision}f} {unit}"
    return f"{sign}{value:.0f} B"


def format_count(value: int) -> str:
    """Parameter counts: 125.2M, 6.66B."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            digits = 2 if value / scale < 10 else 1
            return f"{value / scale:.{digits}f}{unit}"
    return str(value)
