"""The run screen of a placed (offloaded) run, drawn from the session recorded on a GPU.

The GPU box has no terminal to show the app in, so the session `vramtui run
--device-map auto --max-memory ...` saved there (its CSV and JSON) is read back
here into the events the engine sent — Hello, the phases where the rows change
phase, Placed (what each device holds, from the JSON's `devices`), every engine
sample with each device's reading (the CSV's rows of one step: the run's own
device is the main row, each other device a row of its own), every NVML reading,
Loaded and Done — and the app draws the run screen of the finished run (the
summary screen, then `g`) at 100 x 30:

    python benchmarks/offload_screenshot.py benchmarks/results/offload/offload-h200 \\
        --out screenshots/offload.svg
    python benchmarks/offload_screenshot.py benchmarks/results/offload/offload-h200 \\
        --follow cpu --out screenshots/offload-cpu.svg   # `d`: the CPU's side of it

Before drawing, the rebuilt session's peaks and per-device summary are checked
against those the JSON recorded; a difference stops the script.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.session import NvmlSample, Session, SessionView
from vramtui.spec import DeviceChoice, DeviceList, RunSpec
from vramtui.tui.app import VramApp
from vramtui.tui.screens.run import RunScreen
from vramtui.tui.screens.summary import SummaryScreen

SIZE = (100, 30)
Item = ev.Event | NvmlSample
DeviceReading = tuple[str, int | None, int | None, int | None]


def _int(text: str) -> int | None:
    return int(text) if text else None


def hello_of(env: dict[str, Any]) -> ev.Hello:
    versions = {k: env[k] for k in ("torch", "transformers", "python") if k in env}
    return ev.Hello(
        env["engine_pid"], env["device"], env["backend"], env["device_name"], None,
        env["device_total_bytes"], env["memory_source"], versions,
    )  # fmt: skip


def placed_of(summary: dict[str, Any]) -> ev.Placed:
    """What each device holds, as the JSON saved it (its measured peaks left out:
    the session finds those again in the samples)."""
    held = ("device", "layers", "modules", "weights_bytes")
    return ev.Placed([{k: d[k] for k in held} for d in summary["devices"]])


def loaded_of(summary: dict[str, Any]) -> ev.Loaded:
    """The architecture's sizes (positions, layers, heads) are not in the files: None."""
    return ev.Loaded(
        summary["weights_bytes"], summary["params"], summary["dtype"], None, None, None,
        None, None, summary["spec"]["prompt_tokens"], summary["timings"]["load_s"],
    )  # fmt: skip


def done_of(summary: dict[str, Any]) -> ev.Done:
    known = {f.name for f in fields(ev.Done)}
    return ev.Done(**{k: v for k, v in summary["timings"].items() if k in known})


def _engine_reading(row: dict[str, str]) -> tuple[int | None, int | None, int | None]:
    return _int(row["allocated_bytes"]), _int(row["reserved_bytes"]), _int(row["step_peak_bytes"])


def _sample(row: dict[str, str], extra: list[DeviceReading]) -> ev.Sample:
    """One engine step: the main row (the run's device) and the other devices' rows."""
    reading = _engine_reading(row)
    devices = ((row["device"], *reading), *extra)
    return ev.Sample(
        _int(row["token"]), float(row["t_s"]), row["phase"], *reading,
        _int(row["kv_cache_bytes"]), devices,
    )  # fmt: skip


def engine_samples(rows: list[dict[str, str]], device: str) -> Iterator[tuple[int, ev.Sample]]:
    """(index of its main row, sample) for every engine step, in order. Each other
    device's row follows its step's main row with the same time."""
    main: tuple[int, dict[str, str]] | None = None
    extra: list[DeviceReading] = []
    for i, row in enumerate(rows):
        if row["source"] != "engine":
            continue
        if row["device"] != device:
            if main is None or row["t_s"] != main[1]["t_s"]:
                raise ValueError(f"row {i + 2}: {row['device']} reading without its step")
            extra.append((row["device"], *_engine_reading(row)))
            continue
        if main is not None:
            yield main[0], _sample(main[1], extra)
        main, extra = (i, row), []
    if main is not None:
        yield main[0], _sample(main[1], extra)


def nvml_of(row: dict[str, str]) -> NvmlSample:
    return NvmlSample(
        float(row["t_s"]), _int(row["nvml_process_bytes"]),
        _int(row["nvml_device_used_bytes"]), _int(row["nvml_device_total_bytes"]),
    )  # fmt: skip


def phase_changes(rows: list[dict[str, str]]) -> dict[int, ev.Phase]:
    """A Phase at the first row of each phase: the engine's own Phase times are not in
    the files, so each starts at its first recorded row (NVML reads every 5 ms)."""
    out: dict[int, ev.Phase] = {}
    phase = None
    for i, row in enumerate(rows):
        if row["phase"] != phase:
            phase = row["phase"]
            out[i] = ev.Phase(phase, float(row["t_s"]))
    return out


def items_of(summary: dict[str, Any], rows: list[dict[str, str]]) -> list[Item]:
    """The run's events in the engine's order: Placed before the first (load) sample,
    Loaded after it, Done after the last row."""
    samples = dict(engine_samples(rows, summary["environment"]["device"]))
    first = min(samples)
    phases = phase_changes(rows)
    items: list[Item] = [hello_of(summary["environment"])]
    for i, row in enumerate(rows):
        if i in phases:
            items.append(phases[i])
        if row["source"] == "nvml":
            items.append(nvml_of(row))
        elif i == first:
            items += [placed_of(summary), samples[i], loaded_of(summary)]
        elif i in samples:
            items.append(samples[i])
    return [*items, done_of(summary)]


def read_session(stem: Path) -> Session:
    summary = json.loads(stem.with_suffix(".json").read_text())
    with stem.with_suffix(".csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    session = Session(summary["spec"], summary["environment"], t0=0.0)
    for item in items_of(summary, rows):
        if isinstance(item, NvmlSample):
            session.add_nvml(item)
        else:
            session.apply(item)
    session.end_at(float(summary["elapsed_s"]))
    check(session.snapshot(), summary)
    return session


def differences(view: SessionView, summary: dict[str, Any]) -> list[str]:
    """Where the rebuilt session's peaks or devices differ from what the JSON saved."""
    rebuilt = view.summary()
    out = []
    for name, saved in summary["peaks"].items():
        got = rebuilt["peaks"].get(name)
        if got is None or (got["value"], got["token"]) != (saved["value"], saved["token"]):
            out.append(f"peak {name}: rebuilt {got}, recorded {saved}")
    # what the JSON recorded of each device (a newer summary says more of each)
    kept = [
        {k: d.get(k) for k in saved}
        for d, saved in zip(rebuilt["devices"], summary["devices"], strict=False)
    ]
    if kept != summary["devices"]:
        out.append(f"devices: rebuilt {rebuilt['devices']}, recorded {summary['devices']}")
    return out


def check(view: SessionView, summary: dict[str, Any]) -> None:
    wrong = differences(view, summary)
    if wrong:
        raise SystemExit("the rebuilt session differs from the recorded one:\n" + "\n".join(wrong))


class Recorded:
    """A recorder whose session is already complete (the recorded run, ended)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        return self.session

    def cancel(self, reason: str = "") -> None:
        return None


def recorded_devices(env: dict[str, Any]) -> DeviceList:
    """The start screen's list: the recorded GPU and the CPU (its free memory unknown)."""
    gpu = DeviceChoice(env["device"], env["device_name"], env["device_total_bytes"])
    return DeviceList((gpu, DeviceChoice("cpu", "CPU")))


def make_app(session: Session, sessions: Path) -> VramApp:
    view = session.snapshot()
    return VramApp(
        RunSpec.from_dict(dict(view.spec)),
        start=True,
        out_dir=sessions,  # the app saves what it ran: not here
        make_recorder=lambda _spec: Recorded(session),
        list_devices=lambda: recorded_devices(view.environment),
        clock=lambda: view.ended_at or 0.0,
    )


async def shoot(session: Session, out: Path, follow: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as sessions:
        app = make_app(session, Path(sessions))
        async with app.run_test(size=SIZE) as pilot:
            while not isinstance(app.screen, SummaryScreen):
                await pilot.pause(0.1)
            await pilot.press("g")  # the summary's Graph: the run screen, ended
            await pilot.pause(0.3)
            screen = app.screen
            assert isinstance(screen, RunScreen), type(screen).__name__
            screen.redraw()
            await pilot.pause(0.3)
            for _ in screen.devices:  # d: the next device, until the one asked for
                if follow is None or screen.device == follow:
                    break
                await pilot.press("d")
                await pilot.pause(0.3)
            if follow is not None and screen.device != follow:
                raise SystemExit(f"no device {follow} in this run: {screen.devices}")
            app.save_screenshot(filename=out.name, path=str(out.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stem", type=Path, help="the session's files, without .csv/.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--follow", help="the device the screen follows (d), e.g. cpu")
    args = parser.parse_args()
    asyncio.run(shoot(read_session(args.stem), args.out, args.follow))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
