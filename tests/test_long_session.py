"""Twenty runs, one after another, in one app session."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import psutil
import pytest
from helpers import CPU_ONLY, resolved, tiny_spec

from vramtui.tui.app import VramApp
from vramtui.tui.screens.summary_screen import SummaryScreen

pytestmark = pytest.mark.engine  # every test here runs real engines

RUNS = 20


def test_twenty_runs_leave_no_zombies_and_little_memory(tmp_path: Path) -> None:
    me = psutil.Process()
    spec = tiny_spec(tokens=2)
    app = VramApp(spec, out_dir=tmp_path, list_devices=lambda: CPU_ONLY)
    rss: list[int] = []

    async def drive() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for i in range(RUNS):
                app.begin(resolved(spec))
                deadline = time.monotonic() + 120
                while not (
                    app.current and app.current.ended and isinstance(app.screen, SummaryScreen)
                ):
                    assert time.monotonic() < deadline, f"run {i} never ended"
                    await pilot.pause(0.05)
                assert app.current.session.snapshot().status == "completed"
                app.action_run_again()
                await pilot.pause(0.05)
                gc.collect()
                rss.append(me.memory_info().rss)
            await pilot.press("q")

    asyncio.run(drive())
    children = me.children(recursive=True)
    zombies = [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
    engines = [c for c in children if "vramtui.measure.engine.engine_main" in " ".join(c.cmdline())]
    assert zombies == [] and engines == []
    assert len(list(tmp_path.glob("*.json"))) == RUNS
    # Growth from the end of the second run (imports, caches warm) to the last.
    assert rss[-1] - rss[1] < 20 * 1024 * 1024, [r // 1024 for r in rss]
