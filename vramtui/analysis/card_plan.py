"""Planning for a card that is not here: the start screen's "plan for: RTX 4090" marks.

Pure (no Textual): for a card (models/cards.py) and the run the form describes, each
catalogue model's mark: whether it fits, the largest context at the form's batch, the
largest batch at its context; for a fine-tuning recipe, the largest sequence at its
micro-batch and the largest micro-batch at its sequence, from the approximate training
estimate (or a training trace already cached), as `vramtui fit --workload` plans them.
Generation over the whole catalogue takes a fraction of a second of CPU, fine-tuning
several seconds (`vramtui fit`'s search), so a screen calls it from a worker thread,
never the UI's, and may stop it between models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vramtui.models.cards import Target
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.fit_search import Budget, FitRow, Search
from vramtui.predict.planner import GeneratePlanner, NotEstimated, Planner, Setting
from vramtui.predict.quantized import FOUR_BIT
from vramtui.predict.training.planner import NotTraced, TrainPlanner, WorkloadPlanner
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import METHODS, TrainSpec
from vramtui.units import format_count

DEFAULT_MARGIN = 0.05  # vramtui fit's default --margin


@dataclass(frozen=True)
class CatalogueMark:
    """One catalogue model against the card, at the form's settings."""

    model: str
    fits: bool | None  # None: not estimated (`note` says why)
    max_context: int = 0
    max_batch: int = 0
    basis: str = ""
    note: str = ""
    unit: str = "ctx"  # what max_context counts: a context, or fine-tuning's sequence

    @property
    def text(self) -> str:
        """A short cell: "fits · 47.2K ctx", "no · 2.0K ctx", "fits · 4.1K seq", "no",
        or "–"."""
        if self.fits is None:
            return "–"
        word = "fits" if self.fits else "no"
        if self.max_context == 0:
            return word
        return f"{word} · {format_count(self.max_context)} {self.unit}"


def setting_of(spec: RunSpec) -> Setting:
    """The fit search's setting for the run a form describes (generation)."""
    return Setting(
        workload="generate", quant=spec.quant, prompt_tokens=spec.prompt_tokens,
        tokens=spec.tokens, batch=spec.batch, dtype=spec.dtype or "float16", attn=spec.attn,
        double_quant=spec.double_quant and spec.quant in FOUR_BIT,
    )  # fmt: skip


def train_setting(train: TrainSpec) -> Setting:
    """The fit search's setting for a fine-tuning recipe: its sequences as the context
    (a few tokens held, the rest grown, as `vramtui fit --workload --context SEQ`)."""
    base = train.base
    held = max(0, min(Setting.prompt_tokens, train.seq - 1))
    return Setting(
        workload=train.method, prompt_tokens=held, tokens=train.seq - held,
        batch=base.batch, dtype=base.dtype or "bfloat16", attn=base.attn,
    )  # fmt: skip


def train_planner(train: TrainSpec) -> Planner:
    """`vramtui fit --workload`'s planner for the recipe, tracing nothing: cached traces,
    else the approximate estimate from the config."""
    fine_tune = TrainPlanner(train.optim, train.grad_checkpointing, may_trace=False)
    return WorkloadPlanner(GeneratePlanner(), fine_tune)


def _mark(row: FitRow) -> CatalogueMark:
    unit = "seq" if row.setting.workload in METHODS else "ctx"
    return CatalogueMark(
        row.model, row.fits, row.max_context, row.max_batch, row.peak.basis, unit=unit
    )


def plan_for_card(
    target: Target,
    spec: RunSpec,
    names: Iterable[str] | None = None,
    *,
    margin_share: float = DEFAULT_MARGIN,
    planner: Planner | None = None,
    train: TrainSpec | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, CatalogueMark]:
    """Each named catalogue model's mark (every model's by default), keyed by name: for
    the generation `spec` describes, or for fine-tuning it by `train`. A precision or
    workload the planner does not estimate, or a KV cache other than the dynamic one
    (the only one it plans), marks every model unknown, with one line as the note; a
    model with no estimate of its step (an architecture the approximate estimate does
    not know, never traced) is marked unknown with why. `stop` is asked between models:
    once it says so, the marks made so far are returned."""
    if train is not None:
        planner = planner or train_planner(train)
        setting = train_setting(train)
    else:
        planner = planner or GeneratePlanner()
        setting = setting_of(spec)
    chosen = [CATALOGUE[n] for n in (names if names is not None else CATALOGUE)]
    try:
        planner.check(setting.workload, setting.quant)
        if train is None and spec.cache != "dynamic":
            raise NotEstimated(f"KV cache {spec.cache}: not planned (dynamic only)")
    except NotEstimated as exc:
        return {e.name: CatalogueMark(e.name, None, note=str(exc)) for e in chosen}
    margin = int(target.total_bytes * margin_share)
    # the whole catalogue, as `vramtui fit` over several models: replays near the line
    # strided (within their stated bound, the row marked `~`), not step by step
    search = Search(planner, Budget(target.total_bytes, target.context_bytes, margin), strided=True)
    marks: dict[str, CatalogueMark] = {}
    for entry in chosen:
        if stop():
            break
        try:
            marks[entry.name] = _mark(search.row(entry, setting))
        except NotTraced:
            marks[entry.name] = CatalogueMark(entry.name, None, note=untraced_note(entry.name))
    return marks


def untraced_note(model: str) -> str:
    """Why a model has no fine-tuning mark, and the command that gives it one."""
    return f"{model}: its step needs a trace (`vramtui fit --model {model} --workload …`)"
