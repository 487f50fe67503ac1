"""A run on the CPU predicted not to fit the RAM available is refused before it starts.

Out of RAM, a CPU run does not fail as a GPU run does (an error, its memory freed): the
system swaps, stalls, or its OOM killer ends the engine or another program. So `vramtui
run` holds the estimate's peak RSS against the RAM available first, and refuses in one
line with exit code 3 (out of memory); --no-ram-check runs it anyway.
"""

from __future__ import annotations

import argparse

from vramtui.errors import UsageError, WontFit
from vramtui.predict.estimator import estimate_run
from vramtui.predict.fit_forecast import ram_fit
from vramtui.runspec import ResolvedRun
from vramtui.units import format_bytes

FLAG = "--no-ram-check"


def add_ram_check_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        FLAG,
        action="store_true",
        help="start a CPU run even when its predicted peak RSS exceeds the RAM available "
        "(without it, such a run is refused before it starts, with exit code 3)",
    )


def ram_refusal(run: ResolvedRun) -> str | None:
    """Why a CPU run won't fit the RAM available, in one line; None if it fits, runs
    elsewhere, or cannot be estimated before it runs (the run will say why)."""
    if run.backend != "cpu":
        return None
    try:
        check = ram_fit(run, estimate_run(run))
    except UsageError:  # the model's code could not be traced
        return None
    if check is None or check.fits:
        return None
    return (
        f"{run.spec.model} won't fit: predicted peak RSS {format_bytes(check.need_bytes, 2)}, "
        f"{format_bytes(check.free_bytes, 2)} of RAM available; {FLAG} runs it anyway"
    )


def check_ram(run: ResolvedRun, skip: bool) -> None:
    """Refuse `run` (WontFit, exit 3) if it is predicted not to fit, unless `skip`."""
    refusal = None if skip else ram_refusal(run)
    if refusal:
        raise WontFit(refusal)
