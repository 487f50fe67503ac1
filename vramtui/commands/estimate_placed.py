"""`vramtui estimate --device-map ...`: a placed run, predicted device by device."""

from __future__ import annotations

import json

from vramtui.predict.estimator import Estimate
from vramtui.predict.placed import PlacedEstimate
from vramtui.report.placed_text import placed_lines
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun
from vramtui.runspec.device_map import MaxMemory, device_id, devices_max_memory, parse_max_memory


def placed_devices(text: str, cpu: DeviceChoice) -> DeviceList:
    """The devices --max-memory names, taken as given (a laptop may ask about GPUs it
    does not have): each with the memory it names."""
    choices = [
        DeviceChoice(device_id(key), "--max-memory", size, size)
        for key, size in parse_max_memory(text).items()
        if isinstance(key, int)
    ]
    return DeviceList((*choices, cpu), gpus_counted=False)


def max_memory_of(resolved: ResolvedRun, found: DeviceList) -> MaxMemory:
    """--max-memory, or else every GPU here at its total and the CPU's available RAM."""
    return devices_max_memory(resolved.max_memory, found)


def print_placed(est: Estimate, placed: PlacedEstimate, as_json: bool) -> None:
    if as_json:
        data = est.to_dict()
        data.update(placed.to_dict())
        print(json.dumps(data, indent=2))
        return
    for line in placed_lines(est, placed):
        print(line)
