"""The inverse question: the largest micro-batch, or sequence, whose training step the
estimate says fits a device. Pure: a search over the estimate, on traces interpolated
from three traced sizes, its answer checked with traces (each cached on disk)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from vramtui.predict.training.replay import TrainingEstimate
from vramtui.predict.training.scaling import interpolate
from vramtui.predict.training.trace import TrainTrace


@dataclass(frozen=True)
class Room:
    """What must fit: the process's device memory (NVML) under the GPU's memory, or,
    under --cap, the allocator's bytes under the cap (the context is not); either way
    the segments in use at once, for the allocator gives its cached ones back before it
    runs out (predict/allocator.py)."""

    bytes: int
    capped: bool = False

    def fits(self, est: TrainingEstimate) -> bool:
        need = est.needed_reserved_bytes
        if not self.capped:
            need += est.context_bytes + est.paged_states_bytes
        return need <= self.bytes


def largest(fits: Callable[[int], bool], guess: int, limit: int) -> int:
    """The largest n in 1..limit with fits(n) (fits must be monotone); 0 if none."""
    guess = min(max(guess, 1), limit)
    if fits(guess):
        lo, step = guess, 1
        while lo + step <= limit and fits(lo + step):
            lo, step = lo + step, step * 2
        hi = min(lo + step, limit + 1)  # the first size known not to fit (or past limit)
    else:
        hi, step = guess, 1
        while hi - step >= 1 and not fits(hi - step):
            hi, step = hi - step, step * 2
        lo = max(hi - step, 0)  # known to fit (0: nothing does)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _points(at: int, limit: int) -> list[int]:
    """Three sizes to interpolate from: the one asked about and two more (a micro-batch
    of 1 may squeeze a dimension: from 2 on)."""
    base = max(at, 2)
    step = max(base // 2, 1)
    points = [p for p in (base, base + step, base + 2 * step) if p <= limit]
    return points if len(points) == 3 else [p for p in (1, 2, 3) if p <= limit]


def largest_that_fits(
    trace_at: Callable[[int], TrainTrace],
    estimate_at: Callable[[TrainTrace, int], TrainingEstimate],
    room: Room,
    at: int,
    limit: int,
) -> int:
    """The largest size (micro-batch or sequence, whichever `trace_at` varies) in
    1..limit whose estimate fits `room`: searched over traces interpolated from three
    sizes (scaling.py), then checked with traces at the answer and one above it; where
    the check fails (or there is no interpolation) searched with traces throughout."""
    traced = lru_cache(maxsize=None)(trace_at)

    def fits_traced(n: int) -> bool:
        return room.fits(estimate_at(traced(n), n))

    points = {n: traced(n) for n in _points(at, limit)}

    def fits_guessed(n: int) -> bool:
        guessed = interpolate(points, n)
        return room.fits(estimate_at(guessed if guessed else traced(n), n))

    guess = largest(fits_guessed, at, limit) if len(points) == 3 else at
    checked = (guess == 0 or fits_traced(guess)) and (guess == limit or not fits_traced(guess + 1))
    return guess if checked else largest(fits_traced, guess, limit)
