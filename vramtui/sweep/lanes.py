"""One sweep over several GPUs: cells dealt in turn to lanes, a lane per device, the
lanes run at once; within a lane one cell after another, each in a fresh engine process
(`Sweep`). Each cell still runs on one device alone: no two engines share a GPU unless
the device is listed twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from vramtui.errors import UsageError
from vramtui.runspec import DeviceList, resolve
from vramtui.runspec.device_choice import check_device
from vramtui.sweep.grid import Cell
from vramtui.sweep.results import CellResult
from vramtui.sweep.sweep_runner import Sweep


def parse_devices(text: str, devices: DeviceList) -> list[str]:
    """'cuda:0,cuda:1' -> the canonical ids, each checked against the devices there are."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--devices is empty; e.g. --devices cuda:0,cuda:1", field="device")
    checked = [check_device(name, devices) for name in names]
    if "auto" in checked:
        raise UsageError("--devices names each device: cuda:N, mps or cpu", field="device")
    return checked


def deal(cells: Sequence[Cell], devices: Sequence[str], there: DeviceList) -> list[list[Cell]]:
    """Cell i to lane i mod n, its spec moved to that lane's device and resolved again."""
    lanes: list[list[Cell]] = [[] for _ in devices]
    for i, cell in enumerate(cells):
        lane = i % len(devices)
        if cell.spec.device_map is not None:
            raise UsageError(
                "--devices runs single-device cells side by side; it does not take --device-map",
                field="device",
            )
        spec = replace(cell.spec, device=devices[lane])
        lanes[lane].append(replace(cell, run=resolve(spec, there)))
    return lanes


class Lanes:
    """Sweeps run at once, one per lane; read like one `Sweep` (run, cancel, results,
    aborted). Callbacks come from the lanes' threads: the caller serialises them."""

    def __init__(self, lanes: Sequence[Sequence[Cell]], make_sweep: Callable[[list[Cell]], Sweep]):
        self.sweeps = [make_sweep(list(cells)) for cells in lanes if cells]

    @property
    def results(self) -> list[CellResult]:
        return sorted((r for s in self.sweeps for r in s.results), key=lambda r: r.cell.index)

    @property
    def aborted(self) -> str | None:
        return next((s.aborted for s in self.sweeps if s.aborted), None)

    def cancel(self, reason: str = "cancelled by the user") -> None:
        for sweep in self.sweeps:
            sweep.cancel(reason)

    def run(self) -> list[CellResult]:
        threads = [
            threading.Thread(target=self._run_lane, args=(sweep,), name=f"lane-{i}", daemon=True)
            for i, sweep in enumerate(self.sweeps)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.results

    def _run_lane(self, sweep: Sweep) -> None:
        sweep.run()
        if sweep.aborted:  # a lane that cannot run (its device refused): stop the others
            self.cancel(sweep.aborted)
