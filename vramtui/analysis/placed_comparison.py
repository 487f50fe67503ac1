"""A placed run's devices predicted, for the table of predicted against measured that
the summary screen, `run` and `show` print (report/summary_text.py's device_rows).

The prediction is predict/placed.py's, for the placement the run itself made (its Placed
event, saved in the JSON's `devices`): no second placement is computed.
"""

from __future__ import annotations

from vramtui.analysis.breakdown import run_estimate
from vramtui.measure.device_view import holds_head
from vramtui.measure.session import SessionView
from vramtui.models.layer_placement import DevicePlacement, Placement
from vramtui.predict.placed import DeviceEstimate, device_estimates
from vramtui.runspec import RunSpec
from vramtui.runspec.device_map import parse_max_memory


def placed_estimates(view: SessionView, only_cached: bool = True) -> dict[str, DeviceEstimate]:
    """Each device's prediction for the placement the run made ({} for a run on one
    device, or a model that cannot be estimated without a trace not made yet)."""
    spec = view.spec
    if not isinstance(spec, RunSpec) or not spec.device_map or view.placed is None:
        return {}
    est = run_estimate(view, only_cached=only_cached)
    if est is None:
        return {}
    held = [{**d, "holds_head": holds_head(d), "largest_block_bytes": _largest_block(d)}
            for d in view.placed.devices]  # fmt: skip
    placement = Placement(devices=tuple(DevicePlacement.from_dict(d) for d in held))
    max_memory = parse_max_memory(spec.max_memory) if spec.max_memory else None
    return {d.device: d for d in device_estimates(est, placement, max_memory)}


def _largest_block(held: dict) -> int:
    """The largest module placed whole on a device; files written before the figure was
    kept: its weights over its layers (a decoder's layers are alike)."""
    if held.get("largest_block_bytes") is not None:
        return int(held["largest_block_bytes"])
    layers = len(held.get("layers") or ())
    return int(held.get("weights_bytes") or 0) // layers if layers else 0
