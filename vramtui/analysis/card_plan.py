"""Planning for a card that is not here: the start screen's "plan for: RTX 4090" marks.

Pure (no Textual): for a card (models/cards.py) and the run the form describes, each
catalogue model's mark: whether it fits, the largest context at the form's batch, the
largest batch at its context. The whole catalogue takes a fraction of a second of CPU
(`vramtui fit`'s search), so a screen calls it from a worker thread, never the UI's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vramtui.models.cards import Target
from vramtui.models.catalogue import CATALOGUE
from vramtui.predict.fit_search import Budget, FitRow, Search
from vramtui.predict.planner import GeneratePlanner, NotEstimated, Planner, Setting
from vramtui.predict.quantized import FOUR_BIT
from vramtui.runspec import RunSpec
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

    @property
    def text(self) -> str:
        """A short cell: "fits · 47.2K ctx", "no · 2.0K ctx", "no", or "–"."""
        if self.fits is None:
            return "–"
        word = "fits" if self.fits else "no"
        if self.max_context == 0:
            return word
        return f"{word} · {format_count(self.max_context)} ctx"


def setting_of(spec: RunSpec) -> Setting:
    """The fit search's setting for the run a form describes (generation)."""
    return Setting(
        workload="generate", quant=spec.quant, prompt_tokens=spec.prompt_tokens,
        tokens=spec.tokens, batch=spec.batch, dtype=spec.dtype or "float16", attn=spec.attn,
        double_quant=spec.double_quant and spec.quant in FOUR_BIT,
    )  # fmt: skip


def _mark(row: FitRow) -> CatalogueMark:
    return CatalogueMark(row.model, row.fits, row.max_context, row.max_batch, row.peak.basis)


def plan_for_card(
    target: Target,
    spec: RunSpec,
    names: Iterable[str] | None = None,
    *,
    margin_share: float = DEFAULT_MARGIN,
    planner: Planner | None = None,
) -> dict[str, CatalogueMark]:
    """Each named catalogue model's mark (every model's by default), keyed by name. A
    precision or workload the planner does not estimate, or a KV cache other than the
    dynamic one (the only one it plans), marks every model unknown, with one line as
    the note."""
    planner = planner or GeneratePlanner()
    setting = setting_of(spec)
    chosen = [CATALOGUE[n] for n in (names if names is not None else CATALOGUE)]
    try:
        planner.check(setting.workload, setting.quant)
        if spec.cache != "dynamic":
            raise NotEstimated(f"KV cache {spec.cache}: not planned (dynamic only)")
    except NotEstimated as exc:
        return {e.name: CatalogueMark(e.name, None, note=str(exc)) for e in chosen}
    margin = int(target.total_bytes * margin_share)
    # the whole catalogue, as `vramtui fit` over several models: replays near the line
    # strided (within their stated bound, the row marked `~`), not step by step
    search = Search(planner, Budget(target.total_bytes, target.context_bytes, margin), strided=True)
    return {e.name: _mark(search.row(e, setting)) for e in chosen}
