"""The start screen's "Plan for": a card other than the one here, and each catalogue
model's mark against it at the form's settings.

The marks are `vramtui fit`'s answers (analysis/card_plan.py): whether the form's run
fits the card, and the largest context at its batch. The whole catalogue takes a
fraction of a second of CPU, so it is planned in a worker thread, a moment after the
form stops changing (typing never waits, and never queues every state it passed
through); a result is shown only if the form and the card still ask for it. A
fine-tuning recipe is planned as `vramtui fit --workload` plans it (the approximate
estimate from each config, several seconds over the catalogue): a newer ask stops the
worker between models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text
from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import get_current_worker

from vramtui.analysis.card_plan import (
    DEFAULT_MARGIN,
    CatalogueMark,
    plan_for_card,
    setting_of,
    train_setting,
)
from vramtui.errors import UsageError
from vramtui.models.cards import CARDS, CONTEXT_MEASURED, Card, GiB, card_target
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.planner import Setting
from vramtui.runspec import RunSpec
from vramtui.runspec.train_spec import TrainSpec
from vramtui.units import format_bytes

HERE = "here"  # the Plan for select's value for this machine: no marks
DEBOUNCE_S = 0.3  # the form unchanged this long before it is planned
FINE_TUNE_BASIS = "fine-tuning: approximate estimates from each config, as `vramtui fit --workload`"
WAITING = "waits for the form to describe a run"
VENDORS = ("NVIDIA GeForce ", "NVIDIA ", "AMD Instinct ", "AMD ")


def short_label(card: Card) -> str:
    """The card's name without its vendor: "RTX 4090", "H100 80GB HBM3"."""
    for vendor in VENDORS:
        if card.label.startswith(vendor):
            return card.label.removeprefix(vendor)
    return card.label


PLAN_OPTIONS = [("this machine", HERE)] + [
    (f"{short_label(c)} · {c.nominal}", c.name) for c in CARDS.values()
]


def assumptions(card: Card, margin_share: float = DEFAULT_MARGIN) -> str:
    """What a plan for `card` assumes: the memory a process sees of it (the vendor's
    "GB" are GiB), the CUDA context, the margin kept free; each measured or assumed."""
    seen = "measured" if card.measured else "assumed"
    context = "measured" if card.context_source == CONTEXT_MEASURED else "assumed"
    target = card_target(card)
    return (
        f"{short_label(card)} ({card.memory_bytes // GiB} GiB): "
        f"{format_bytes(target.total_bytes, 2)} seen "
        f"({seen}), CUDA context {format_bytes(target.context_bytes)} ({context}), "
        f"{margin_share:.0%} margin"
    )


@dataclass(frozen=True)
class PlanAsk:
    """What is planned: a card, and the form's run (None: the form has errors). Two asks
    are the same plan when the card and the setting are (for fine-tuning, the recipe's
    optimizer and checkpointing too): the model highlighted is not part of it."""

    card: str
    setting: Setting | None  # fine-tuning: its workload is the recipe's method
    cache: str = "dynamic"
    recipe: tuple[str, bool] = ("", False)  # fine-tuning's optimizer, checkpointing
    spec: RunSpec | None = field(default=None, compare=False)
    train: TrainSpec | None = field(default=None, compare=False)


def ask_of(card: str, spec: RunSpec | None, train: TrainSpec | None = None) -> PlanAsk:
    """The plan of generating `spec`, or of fine-tuning by `train` (None: its fields are
    wrong); a form with errors (`spec` None) asks for nothing yet."""
    if train is not None:
        recipe = (train.optim, train.grad_checkpointing)
        return PlanAsk(card, train_setting(train), recipe=recipe, spec=spec, train=train)
    if spec is None:
        return PlanAsk(card, None)
    return PlanAsk(card, setting_of(spec), spec.cache, spec=spec)


def plan_marks(
    ask: PlanAsk, stop: Callable[[], bool] = lambda: False
) -> tuple[dict[str, CatalogueMark], str]:
    """Every catalogue model's mark for `ask`, and the note said under them (why they
    are "–", or the basis of fine-tuning's); `stop` ends the plan between models."""
    note = ""
    if ask.spec is not None:
        try:
            target = card_target(CARDS[ask.card])
            marks = plan_for_card(target, ask.spec, train=ask.train, stop=stop)
            note = next((m.note for m in marks.values() if m.note), "")
            if ask.train is not None and not note:
                note = FINE_TUNE_BASIS
            return marks, note
        except UsageError as exc:  # a model whose code or config cannot be traced
            note = str(exc)
    return {n: CatalogueMark(n, None, note=note) for n in CATALOGUE}, note


@dataclass
class CardPlanned(Message, bubble=False):
    """A worker's marks for `ask` (PlanInfo shows them if still asked)."""

    ask: PlanAsk
    marks: dict[str, CatalogueMark]
    note: str


@dataclass
class CardPlanShown(Message):
    """What the catalogue shows now: the card's column (None: no column), the marks,
    whether newer ones are on their way, and a short status."""

    title: str | None
    marks: dict[str, CatalogueMark]
    pending: bool = False
    status: str = ""


class PlanInfo(Static):
    """What the plan assumes and its note; it plans the form's run off the UI thread
    and posts CardPlanShown to the screen, which shows the marks in the catalogue."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._ask: PlanAsk | None = None  # what the form and the card ask for now
        self._timer: Timer | None = None
        self._marks: dict[str, CatalogueMark] = {}  # the latest shown
        self.planned: PlanAsk | None = None  # the ask the marks shown answer

    def ask(self, card: str, spec: RunSpec | None, train: TrainSpec | None = None) -> None:
        """Plan for `card` (HERE: no plan) the run `spec` (None: the form is wrong), or
        fine-tuning it by `train`."""
        if card == HERE:
            if self._ask is not None:
                self._stop()
                self._ask = self.planned = None
                self._marks = {}
                self.update("")
                self.post_message(CardPlanShown(None, {}))
            return
        ask = ask_of(card, spec, train)
        if ask == self._ask:
            return
        self._stop()
        self._ask = ask
        title = short_label(CARDS[card])
        if self.planned is None or self.planned.card != card:  # no marks of another card
            self._marks = {}
            self._show()
        if ask.setting is None:
            self._show(Text(WAITING, style="dim"))
            self.post_message(CardPlanShown(title, self._marks, True, "plan " + WAITING))
            return
        self.post_message(CardPlanShown(title, self._marks, True, "planning…"))
        self._timer = self.set_timer(DEBOUNCE_S, lambda: self._plan(ask))

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _show(self, note: Text | str = "") -> None:
        ask = self._ask
        if ask is not None:
            self.update(Text.assemble(assumptions(CARDS[ask.card]), "\n" if note else "", note))

    @work(thread=True, exclusive=True, group="card-plan")
    def _plan(self, ask: PlanAsk) -> None:
        """The marks, off the UI thread; dropped if a newer plan has been asked."""
        worker = get_current_worker()
        marks, note = plan_marks(ask, stop=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(CardPlanned(ask, marks, note))

    def on_card_planned(self, message: CardPlanned) -> None:
        if message.ask != self._ask:
            return  # the form or the card has changed since: a newer plan is due
        self.planned, self._marks = message.ask, message.marks
        self._show(message.note)
        title = short_label(CARDS[message.ask.card])
        self.post_message(CardPlanShown(title, message.marks, False, message.note))
