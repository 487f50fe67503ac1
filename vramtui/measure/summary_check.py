"""A session rebuilt from its files, checked against what its JSON summary recorded."""

from __future__ import annotations

from typing import Any

from vramtui.measure.session_view import SessionView
from vramtui.measure.summary_format import summary


def rebuilt_differences(view: SessionView, saved: dict[str, Any]) -> list[str]:
    """Where a session rebuilt from its files differs from what its JSON recorded: each
    peak (value and token), the status, a program's generate() calls and, for a placed
    model, each device's figures."""
    rebuilt = summary(view)
    out = []
    for name, recorded_peak in saved["peaks"].items():
        got = rebuilt["peaks"].get(name)
        if got is None or (got["value"], got["token"]) != (
            recorded_peak["value"],
            recorded_peak["token"],
        ):
            out.append(f"peak {name}: rebuilt {got}, recorded {recorded_peak}")
    if rebuilt["status"] != saved["status"]:
        out.append(f"status: rebuilt {rebuilt['status']}, recorded {saved['status']}")
    if rebuilt["generations"] != saved.get("generations", []):
        out.append("generations: rebuilt other than recorded")
    recorded = saved.get("devices", [])
    # what the JSON recorded of each device (a newer summary says more of each)
    kept = [{k: d.get(k) for k in r} for d, r in zip(rebuilt["devices"], recorded, strict=False)]
    if len(rebuilt["devices"]) != len(recorded) or kept != recorded:
        out.append(f"devices: rebuilt {rebuilt['devices']}, recorded {recorded}")
    return out
