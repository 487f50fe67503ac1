"""A training trace at any micro-batch or sequence, from traces at a few sizes.

Pure. Every tensor a step allocates has a size polynomial in the micro-batch (linear)
and the sequence (at most quadratic: eager attention's scores), and the step makes the
same allocations in the same order at every size. So where the traces at three sizes
have the same events but for their sizes, each event's size at another size is the
polynomial through those three (Lagrange); where they differ in shape, there is no
interpolation (None) and the size is traced. The search for what fits guesses with
this and checks its answer with traces.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from vramtui.predict.training.trace import TrainTrace


def _same_shape(traces: list[TrainTrace]) -> bool:
    first = traces[0]
    for other in traces[1:]:
        if len(other.events) != len(first.events) or other.marks != first.marks:
            return False
        if any((a > 0) != (b > 0) for a, b in zip(first.events, other.events, strict=True)):
            return False
        frees = [e for e in other.events if e <= 0]
        if frees != [e for e in first.events if e <= 0]:
            return False
    return True


def _weights(sizes: list[int], n: int) -> list[Fraction]:
    """Lagrange's weights of the points `sizes` at n."""
    out = []
    for i, xi in enumerate(sizes):
        w = Fraction(1)
        for j, xj in enumerate(sizes):
            if j != i:
                w *= Fraction(n - xj, xi - xj)
        out.append(w)
    return out


def interpolate(points: dict[int, TrainTrace], n: int, least: int = 3) -> TrainTrace | None:
    """The trace at size n from traces at `least` or more sizes (three for the
    sequence, two for the micro-batch, which every size is linear in; None: they differ
    in more than sizes, or a size comes out below zero)."""
    sizes = sorted(points)
    traces = [points[s] for s in sizes]
    if n in points:
        return points[n]
    if len(sizes) < least or not _same_shape(traces):
        return None
    weights = _weights(sizes, n)
    events = []
    for values in zip(*(t.events for t in traces), strict=True):
        if values[0] <= 0:
            events.append(values[0])
            continue
        size = sum(w * v for w, v in zip(weights, values, strict=True))
        if size <= 0:
            return None
        events.append(round(size))
    return replace(traces[0], events=tuple(events))
