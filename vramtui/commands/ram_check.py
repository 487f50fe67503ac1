"""A run on the CPU predicted not to fit the RAM available is refused before it starts.

Out of RAM, a CPU run does not fail as a GPU run does (an error, its memory freed): the
system swaps, stalls, or its OOM killer ends the engine or another program. So `vramtui
run` holds the estimate's peak RSS against the RAM available first, and `vramtui train`
a rough lower bound of its own (the weights, and for full fine-tuning a gradient per
weight and the optimizer's states), and each refuses in one line with exit code 3 (out
of memory); --no-ram-check runs it anyway.
"""

from __future__ import annotations

import argparse

from vramtui.errors import UsageError, WontFit
from vramtui.predict.cpu_process import cpu_process
from vramtui.predict.estimator import Estimate, estimate_run
from vramtui.predict.fit_forecast import ram_fit
from vramtui.runspec import ResolvedRun
from vramtui.runspec.train_spec import TrainSpec
from vramtui.units import format_bytes

# bytes of optimizer state a trained element keeps, per byte of the element (torch's
# AdamW: two moments in the parameter's dtype; SGD without momentum and Adafactor's
# factored moments: none counted) or per element (bitsandbytes' 8-bit AdamW: two bytes)
STATE_COPIES = {"adamw": 2.0, "sgd": 0.0, "adafactor": 0.0}
STATE_BYTES_8BIT = 2

FLAG = "--no-ram-check"


def add_ram_check_argument(
    parser: argparse.ArgumentParser, need: str = "its predicted peak RSS"
) -> None:
    parser.add_argument(
        FLAG,
        action="store_true",
        help=f"start a CPU run even when {need} exceeds the RAM available "
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


def train_need_bytes(est: Estimate, train: TrainSpec) -> int:
    """A lower bound on what a training run holds: the weights as loaded; for full
    fine-tuning, a gradient per weight and the optimizer's states. LoRA's adapters
    (their gradients and states: a few percent) and the activations are left out."""
    if train.method != "full":
        return est.weights_bytes
    weights = est.weights_bytes
    if train.optim in STATE_COPIES:
        states = int(weights * STATE_COPIES[train.optim])
    else:  # the 8-bit AdamWs
        states = STATE_BYTES_8BIT * est.model.params
    return weights + weights + states


def train_ram_refusal(run: ResolvedRun, train: TrainSpec) -> str | None:
    """Why a CPU training run won't fit the RAM available, in one line; None if its
    lower bound (and the Python process) fits, it runs elsewhere, or it cannot be
    estimated before it runs."""
    choice = run.device_choice
    if run.backend != "cpu" or choice is None or not choice.free:
        return None
    try:
        est = estimate_run(run)
    except UsageError:  # the model's code could not be traced
        return None
    if est is None:
        return None
    need = train_need_bytes(est, train) + cpu_process().bytes
    if need <= choice.free:
        return None
    what = "weights" if train.method != "full" else "weights, gradients, optimizer states"
    return (
        f"{run.spec.model} won't fit: training needs at least {format_bytes(need, 2)} of RAM "
        f"({what} and the process), {format_bytes(choice.free, 2)} available; {FLAG} runs "
        "it anyway"
    )


def check_train_ram(run: ResolvedRun, train: TrainSpec, skip: bool) -> None:
    """Refuse a training run (WontFit, exit 3) whose lower bound won't fit, unless `skip`."""
    refusal = None if skip else train_ram_refusal(run, train)
    if refusal:
        raise WontFit(refusal)
