"""The `vramtui profile --live` screen, drawn from a session recorded on a GPU.

The GPU box has no terminal to show the app in, so the session `vramtui profile`
saved there (its CSV and JSON) is read back here into a Session — every engine
sample, every NVML reading, the phases where the samples change phase, the
generate() calls, the program's output lines — and the app's program run
screen draws it at 120 x 36:

    python benchmarks/profile_screenshot.py benchmarks/results/profile/two_generations \\
        --output "reply: 200 tokens in 11.67 s" \\
        --output "batch: 8 x 4 beams, 100 tokens in 6.98 s" --out screenshots/profile.svg
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.session import NvmlSample, Session
from vramtui.tui.profile_app import ProfileApp


def _int(text: str) -> int | None:
    return int(text) if text else None


def read_session(stem: Path) -> Session:
    summary = json.loads(stem.with_suffix(".json").read_text())
    env = summary["environment"]
    session = Session(summary["spec"], env, t0=0.0)
    versions = {k: env[k] for k in ("torch", "transformers", "python") if k in env}
    hello = ev.Hello(
        env["engine_pid"], env["device"], env["backend"], env["device_name"], None,
        env["device_total_bytes"], env["memory_source"], versions,
    )  # fmt: skip
    session.apply(hello)
    phase = None
    with stem.with_suffix(".csv").open(newline="") as f:
        for row in csv.DictReader(f):
            t = float(row["t_s"])
            if row["source"] == "nvml":
                session.add_nvml(
                    NvmlSample(
                        t,
                        _int(row["nvml_process_bytes"]),
                        _int(row["nvml_device_used_bytes"]),
                        _int(row["nvml_device_total_bytes"]),
                    )
                )
                continue
            if row["phase"] != phase:
                phase = row["phase"]
                session.apply(ev.Phase(phase, t))
            session.apply(
                ev.Sample(
                    _int(row["token"]), t, phase, _int(row["allocated_bytes"]),
                    _int(row["reserved_bytes"]), _int(row["step_peak_bytes"]),
                    _int(row["kv_cache_bytes"]),
                )
            )  # fmt: skip
    timings = summary["timings"]
    loaded = ev.Loaded(
        summary["weights_bytes"], summary["params"], summary["dtype"],
        None, None, None, None, None, 0, timings["load_s"],
    )  # fmt: skip
    session.apply(loaded)
    for g in summary["generations"]:
        t_start, t_end = g.pop("t_start_s"), g.pop("t_end_s")
        session.apply(ev.Generation(**g, t_start=t_start, t_end=t_end))
    session.apply(ev.Done(**timings))
    session.end_at(float(summary["elapsed_s"]))
    return session


class Held:
    """A recorder whose session is already complete; run() lasts until cancel()."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cancelled = threading.Event()

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        self._cancelled.wait()
        return self.session

    def cancel(self, reason: str = "") -> None:
        self._cancelled.set()


async def shoot(session: Session, lines: list[str], out: Path) -> None:
    def make(on_output: Callable[[str], None]) -> Any:
        for line in lines:
            on_output(line)
        return Held(session)

    with tempfile.TemporaryDirectory() as sessions:  # the app saves what it ran: not here
        app = ProfileApp(make, out_dir=Path(sessions), clock=lambda: session.ended_at or 0.0)
        await _shoot(app, out)


async def _shoot(app: ProfileApp, out: Path) -> None:
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.5)
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        app.save_screenshot(filename=out.name, path=str(out.parent))
        app.current.recorder.cancel()  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stem", type=Path, help="the session's files, without .csv/.json")
    parser.add_argument("--output", action="append", default=[], help="a line the program wrote")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(shoot(read_session(args.stem), args.output, args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
