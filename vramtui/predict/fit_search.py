"""The most a card holds: for one model, the largest context at a batch and the largest
batch at a context whose planned peak fits the memory the card leaves the allocator.

Pure Python, over the `Planner` seam (predict/planner.py). The planned need grows with
the context and with the batch, so each answer is a search over whole numbers: the
bracket's ends are always evaluated (the answer fits, the next step up does not), and
the next probe is the secant's guess between them, halved where the guess would not
shrink the bracket fast enough, so a few estimates find each answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from vramtui.models.catalogue import Entry
from vramtui.predict.planner import PlannedPeak, Planner, Setting

MAX_BATCH = 1 << 16


@dataclass(frozen=True)
class Budget:
    """What the card leaves the caching allocator: its total, less the CUDA context,
    less the margin."""

    total_bytes: int  # what a process sees of the card
    context_bytes: int  # the CUDA context and libraries
    margin_bytes: int

    @property
    def usable_bytes(self) -> int:
        return self.total_bytes - self.context_bytes - self.margin_bytes


@dataclass(frozen=True)
class FitRow:
    """One model at one setting, held against one budget."""

    model: str
    family: str
    setting: Setting
    peak: PlannedPeak  # at the asked setting
    usable_bytes: int
    context_bytes: int  # the card's CUDA context, added to the need for the process total
    max_context: int  # at the asked batch; 0: not even one new token fits
    max_batch: int  # at the asked context; 0: not even one sequence fits
    positions: int  # the model's limit
    # The asked context is past the model's positions: the row is planned at the limit
    # (setting) and does not fit as asked.
    beyond_positions: bool = False

    @property
    def fits(self) -> bool:
        return self.peak.need_bytes <= self.usable_bytes and not self.beyond_positions

    @property
    def headroom_bytes(self) -> int:
        """What is left after the margin (negative: short by that much)."""
        return self.usable_bytes - self.peak.need_bytes

    @property
    def peak_total_bytes(self) -> int:
        """The process's planned peak: the allocator's need and the CUDA context."""
        return self.peak.need_bytes + self.context_bytes

    @property
    def binding(self) -> str:
        if self.beyond_positions or (self.fits and self.max_context >= self.positions):
            return "positions"
        return self.peak.binding(self.usable_bytes)


def largest(over: Callable[[int], int], lo: int, hi: int) -> int:
    """The largest x in lo..hi with over(x) <= 0, where over(x) (the need at x less the
    budget) grows with x; lo - 1 when none. Probes alternate between the secant's
    guess and the bracket's middle, so a nearly straight need is found in a few and
    any other in twice the bisection's count at most."""
    low = over(lo)
    if low > 0:
        return lo - 1
    high = over(hi)
    if high <= 0:
        return hi
    good, bad = lo, hi  # over(good) <= 0 < over(bad)
    secant = True
    while bad - good > 1:
        if secant:
            x = good + int(-low * (bad - good) / (high - low))
        else:
            x = (good + bad) // 2
        x = min(max(x, good + 1), bad - 1)
        value = over(x)
        if value <= 0:
            good, low = x, value
        else:
            bad, high = x, value
        secant = not secant
    return good


def gallop(over: Callable[[int], int], limit: int, start: int = 1) -> int:
    """The largest x in start..limit with over(x) <= 0 (start - 1 when none), without an
    upper end to start from: each step goes to where the line through the last two
    points crosses the budget, at least doubling the step while it keeps fitting, then
    `largest`."""
    lo, low = start, over(start)
    if low > 0:
        return start - 1
    hi = min(2 * start, limit)
    high = over(hi)
    while high <= 0 and hi < limit:
        slope = (high - low) / (hi - lo)
        step = -high / slope + 1 if slope > 0 else hi
        nxt = min(limit, hi + max(int(step), hi - lo + 1))
        lo, low, hi = hi, high, nxt
        high = over(hi)
    return largest(over, lo, hi)


class Search:
    """One model's answers against one budget, through a planner."""

    def __init__(
        self, planner: Planner, budget: Budget, exact_rows: bool = False, strided: bool = False
    ) -> None:
        """`exact_rows`: each row's figures at the asked setting replayed, not only
        its fits / does not fit (a few models; the whole catalogue would be slow).
        `strided`: generation's replays near the line strided (Setting.strided: many
        models), not step by step."""
        self.planner, self.budget, self.exact_rows = planner, budget, exact_rows
        self.strided = strided and not exact_rows

    def peak(self, model: Entry, setting: Setting) -> PlannedPeak:
        """The planned peak, as cheap as still tells whether it fits: the replayed one
        only where the cheap figure's spread straddles the budget."""
        cheap = self.planner.peak(model, setting, exact=False)
        if abs(cheap.need_bytes - self.budget.usable_bytes) > cheap.spread_bytes:
            return cheap
        strided = self.strided and setting.workload == "generate"
        return self.planner.peak(model, replace(setting, strided=strided))

    def _over(self, model: Entry, setting: Setting) -> int:
        return self.peak(model, setting).need_bytes - self.budget.usable_bytes

    def max_context(self, model: Entry, setting: Setting) -> int:
        """The largest prompt + new tokens that fits at the setting's batch, the prompt
        (or with `grow="prompt"` the new tokens) held; 0 where not one more token fits."""
        first = setting.held + 1
        limit = self.planner.positions(model)
        if limit < first:
            return 0

        def over(context: int) -> int:
            return self._over(model, setting.with_context(context))

        # The need is not monotone in the context to the byte (the allocator packs the
        # cache's segments differently at each length): where the asked context fits,
        # the answer is searched up from it, so it is never below what fits.
        start = setting.context if over(setting.context) <= 0 else first
        found = largest(over, min(start, limit), limit)
        return found if found >= first else 0

    def max_batch(self, model: Entry, setting: Setting) -> int:
        """The largest batch that fits at the setting's context (0: not even one)."""

        def over(batch: int) -> int:
            return self._over(model, setting.with_batch(batch))

        start = setting.batch if over(setting.batch) <= 0 else 1
        found = gallop(over, MAX_BATCH, start)
        return found if found >= 1 else 0

    def row(self, model: Entry, setting: Setting) -> FitRow:
        positions = self.planner.positions(model)
        beyond = setting.context > positions
        if beyond:
            setting = within(setting, positions)
        return FitRow(
            model=model.name,
            family=model.family,
            setting=setting,
            peak=self.planner.peak(model, setting)
            if self.exact_rows
            else self.peak(model, setting),
            usable_bytes=self.budget.usable_bytes,
            context_bytes=self.budget.context_bytes,
            max_context=self.max_context(model, setting),
            max_batch=self.max_batch(model, setting),
            positions=positions,
            beyond_positions=beyond,
        )


def within(setting: Setting, positions: int) -> Setting:
    """The setting held to a model's positions: the growing part shortened, and where
    the held part alone passes them, one new token after the longest prompt."""
    if setting.held < positions:
        return setting.with_context(positions)
    return replace(setting, prompt_tokens=positions - 1, tokens=1)
