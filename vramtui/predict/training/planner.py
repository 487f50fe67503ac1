"""`vramtui fit` for fine-tuning: the Planner seam (predict/planner.py) answered with the
training estimate (replay.py) for --workload full, lora and qlora.

Pure Python. The sequence is the setting's context, the micro-batch its batch; full and
lora train in the setting's dtype, qlora stores the base in nf4 with double quant
(recipe.py). A search asks for many sizes, and each traced size costs a child process,
so a model's sizes are interpolated (scaling.py) from a grid traced once around the
first setting asked of it: two micro-batches (every size is linear in it) by three
sequences (at most quadratic). An interpolated peak carries a spread, so the search
asks for the traced figure only near the budget's line (fit_search.py). Where tracing
is not allowed (`may_trace=False`: several models at once) only traces cached on disk
are read; a model missing one is estimated from its config's numbers (config_steps.py,
basis "approximate"), or, for a family not written there, raises `NotTraced`, which
`vramtui fit` lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vramtui.models.catalogue import Entry
from vramtui.predict.planner import (
    GeneratePlanner,
    NotEstimated,
    PlannedPeak,
    Planner,
    Setting,
)
from vramtui.predict.training.config_steps import config_train_trace
from vramtui.predict.training.replay import TrainingEstimate, estimate_training
from vramtui.predict.training.scaling import interpolate
from vramtui.predict.training.trace import (
    TrainShape,
    TrainTrace,
    cached_train_trace,
    train_trace,
)
from vramtui.runspec.train_spec import METHODS, OPTIMIZERS

# A tracer: the trace of a model (name, config) at a shape; None: not traced.
Tracer = Callable[[str, dict[str, Any], TrainShape], TrainTrace | None]
# How far an interpolated need may lie from the traced one before the search asks for
# the traced figure: a guard band chosen for the search, not a measured error (on exact
# polynomials the interpolation is exact; it errs where a step changes shape).
SPREAD_SHARE = 0.02
SPREAD_FLOOR = 32 * 1024 * 1024


class NotTraced(Exception):
    """A model with no cached training trace where tracing is not allowed."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


@dataclass(frozen=True)
class Grid:
    """The sizes a model's traces are interpolated from."""

    batches: tuple[int, int]
    seqs: tuple[int, int, int]


def grid(batch: int, seq: int, positions: int) -> Grid:
    """Two micro-batches (from 2: a batch of one may squeeze a dimension) and three
    sequences around the asked ones, within the model's positions."""
    b = max(batch, 2)
    s = min(max(seq, 4), positions)
    seqs = (s // 2, s, min(2 * s, positions)) if 2 * s <= positions else (s // 4, s // 2, s)
    return Grid((b, 2 * b), (max(seqs[0], 1), seqs[1], seqs[2]))


class TrainPlanner:
    """Fine-tuning (full, lora, qlora) through the training estimate."""

    def __init__(
        self,
        optim: str = "adamw",
        grad_checkpointing: bool = False,
        may_trace: bool = True,
        tracer: Tracer | None = None,
        cached: Tracer | None = None,
    ) -> None:
        """`tracer` traces a shape (a child process); `cached` reads one from disk."""
        if optim not in OPTIMIZERS:
            raise NotEstimated(f"unknown --optim {optim!r}; choose from {', '.join(OPTIMIZERS)}")
        self.optim, self.grad_checkpointing, self.may_trace = optim, grad_checkpointing, may_trace
        self._tracer: Tracer = tracer or train_trace
        self._cached: Tracer = cached or cached_train_trace
        self._traces: dict[tuple[str, TrainShape], TrainTrace | None] = {}
        self._grids: dict[tuple[str, TrainShape], Grid] = {}
        self._approximate: dict[tuple[str, TrainShape], TrainingEstimate | None] = {}
        self.traced = 0  # traces this planner started (not read from disk)

    def check(self, workload: str, quant: str) -> None:
        if workload not in METHODS:
            raise NotEstimated(f"--workload {workload} is not fine-tuning ({', '.join(METHODS)})")
        if quant != "none":
            raise NotEstimated(
                f"--workload {workload} takes no --quant ({quant}): qlora stores the base in "
                "nf4 with double quant itself, full and lora train it in --dtype"
            )

    def positions(self, model: Entry) -> int:
        return GeneratePlanner().positions(model)

    def shape(self, setting: Setting, batch: int = 0, seq: int = 0) -> TrainShape:
        return TrainShape(
            method=setting.workload, batch=batch or setting.batch, seq=seq or setting.context,
            dtype=setting.dtype, attn=setting.attn, backend="cuda",
            grad_checkpointing=self.grad_checkpointing, optim=self.optim,
        )  # fmt: skip

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        shape = self.shape(setting)
        if not exact:
            guessed = self._interpolated(model, setting)
            if guessed is not None:
                return planned_training(estimate_training(guessed, shape), "interpolated")
        traced = self._trace(model, shape)
        if traced is not None:
            return planned_training(estimate_training(traced, shape), "traced", spread=False)
        guessed = self._interpolated(model, setting)
        if guessed is not None:
            return planned_training(estimate_training(guessed, shape), "interpolated")
        written = self._written(model, shape)
        if written is None:
            raise NotTraced(model.name)
        return planned_training(written, "approximate")

    def _written(self, model: Entry, shape: TrainShape) -> TrainingEstimate | None:
        """The approximate estimate (config_steps.py), once a model and shape: a search
        asks for the same size again, exactly, near the budget's line."""
        key = (model.name, shape)
        if key not in self._approximate:
            written = config_train_trace(dict(model.config), shape)
            found = None if written is None else estimate_training(written, shape)
            self._approximate[key] = found
        return self._approximate[key]

    def _trace(self, model: Entry, shape: TrainShape) -> TrainTrace | None:
        key = (model.name, shape)
        if key not in self._traces:
            config = dict(model.config)
            found = self._cached(model.name, config, shape)
            if found is None and self.may_trace:
                found = self._tracer(model.name, config, shape)
                self.traced += 1
            self._traces[key] = found
        return self._traces[key]

    def _interpolated(self, model: Entry, setting: Setting) -> TrainTrace | None:
        """The trace at the setting from the model's grid (None: not interpolable)."""
        family = (model.name, self.shape(setting, batch=1, seq=1))
        if family not in self._grids:  # the grid sits around the first setting asked
            self._grids[family] = grid(setting.batch, setting.context, self.positions(model))
        g = self._grids[family]
        rows: dict[int, TrainTrace] = {}
        for b in g.batches:
            points = {s: self._trace(model, self.shape(setting, b, s)) for s in g.seqs}
            known = {s: t for s, t in points.items() if t is not None}
            if len(known) < len(points):
                return None
            at = interpolate(known, setting.context)
            if at is None:
                return None
            rows[b] = at
        return interpolate(rows, setting.batch, least=2)


def planned_training(est: TrainingEstimate, basis: str, spread: bool = True) -> PlannedPeak:
    """A PlannedPeak from a training estimate: the allocator's segments in use at once
    (its cached ones it gives back before it runs out) and, on CUDA, a paged
    optimizer's unified memory while resident (the CUDA context is the card's);
    gradients and optimizer states as terms of their own."""
    need = est.needed_reserved_bytes + est.paged_states_bytes
    dynamic = max(0, need - est.weights_bytes)
    return PlannedPeak(
        need_bytes=need,
        weights_bytes=est.weights_bytes,
        kv_cache_bytes=0,
        activation_bytes=est.activations_bytes,
        slack_bytes=est.slack_bytes,
        basis=basis,
        spread_bytes=int(SPREAD_SHARE * dynamic) + SPREAD_FLOOR if spread else 0,
        other_terms=(
            ("gradients", est.gradients_bytes),
            ("optimizer states", est.optimizer_states_bytes + est.paged_states_bytes),
        ),
    )


class WorkloadPlanner:
    """Generation to one planner, fine-tuning to the other, by the setting's workload."""

    def __init__(self, generate: Planner, train: Planner) -> None:
        self.generate, self.train = generate, train

    def _for(self, workload: str) -> Planner:
        return self.generate if workload not in METHODS else self.train

    def check(self, workload: str, quant: str) -> None:
        self._for(workload).check(workload, quant)

    def positions(self, model: Entry) -> int:
        return self.generate.positions(model)

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        return self._for(setting.workload).peak(model, setting, exact)
