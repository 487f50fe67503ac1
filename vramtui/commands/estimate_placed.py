"""`vramtui estimate --device-map ...`: a placed run, predicted device by device."""

from __future__ import annotations

import json

from vramtui.errors import UsageError
from vramtui.predict.estimate import Estimate
from vramtui.predict.placed import PlacedEstimate
from vramtui.report.placed_text import placed_lines
from vramtui.spec import DeviceChoice, DeviceList, ResolvedRun
from vramtui.spec.placement import MaxMemory, device_id, parse_max_memory


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
    if resolved.max_memory is not None:
        return resolved.max_memory
    out: MaxMemory = {}
    for choice in found.choices:
        if choice.id.startswith("cuda:") and choice.total:
            out[int(choice.id.split(":")[1])] = choice.total
        elif choice.id == "cpu" and choice.free:
            out["cpu"] = choice.free
    if not any(isinstance(k, int) for k in out):
        raise UsageError(
            "no GPU here to place the model on; name the devices with --max-memory, "
            "e.g. 0=80GiB,1=80GiB",
            field="max_memory",
        )
    return out


def print_placed(est: Estimate, placed: PlacedEstimate, as_json: bool) -> None:
    if as_json:
        data = est.to_dict()
        data.update(placed.to_dict())
        print(json.dumps(data, indent=2))
        return
    for line in placed_lines(est, placed):
        print(line)
