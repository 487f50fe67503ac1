"""Data lines drawn into plotext's matrix: held to what plotext itself draws."""

from __future__ import annotations

import random
from typing import Any

import pytest
from textual_plotext.plot import Plot

from vramtui.tui.widgets.plot_lines import Series, draw_series, frame_signal

COLORS = [(80, 200, 120), (240, 170, 60), (90, 150, 250), (230, 90, 200)]


def setup(plt: Plot, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    plt.plotsize(84, 37)
    plt.theme("pro")
    plt.xlim(*xlim)
    plt.ylim(*ylim)
    plt.xticks([0, 500, 1000, 1500, 2000], ["0", "500", "1000", "1500", "2000"])
    plt.yticks([2.6, 3.0, 3.4], ["2.6 GB", "3.0 GB", "3.4 GB"])
    plt.hline(3.5, (220, 60, 60))
    plt.vline(700, "gray")
    plt.xlabel("token")


def cells(plt: Plot) -> list[Any]:
    m = plt.monitor.matrix
    return [m.marker, m.fullground, m.style, m.background]


def both(series: list[Series], xlim: tuple[float, float], ylim: tuple[float, float]) -> tuple:
    ours, theirs = Plot(), Plot()
    setup(theirs, xlim, ylim)
    for s in series:
        theirs.plot(list(s.xs), list(s.ys), marker=s.marker, color=s.color)
    theirs.build()
    setup(ours, xlim, ylim)
    frame_signal(ours, xlim, ylim)
    ours.build()
    draw_series(ours.monitor.matrix, series, xlim, ylim)
    return cells(ours), cells(theirs)


def random_series(rng: random.Random, n: int, marker: str, color: Any) -> Series:
    xs = sorted(rng.uniform(-50, 2100) for _ in range(n))
    level = rng.uniform(2.4, 3.6)
    ys = []
    for _ in xs:  # steps and slopes, some outside the y limits
        level += rng.choice([0, 0, 0, 0.004, -0.002, 0.08, -0.3, 0.5])
        ys.append(level)
    return Series(xs, ys, marker, color)


@pytest.mark.parametrize("seed", range(12))
def test_braille_lines_are_plotexts_own(seed: int) -> None:
    rng = random.Random(seed)
    series = [random_series(rng, rng.randint(1, 320), "braille", c) for c in COLORS]
    ours, theirs = both(series, (0, 2000), (2.5, 3.7))
    assert ours == theirs


@pytest.mark.parametrize("seed", range(4))
def test_character_markers_are_plotexts_own(seed: int) -> None:
    rng = random.Random(100 + seed)
    series = [random_series(rng, 150, m, c) for m, c in zip("+.=#", COLORS, strict=True)]
    ours, theirs = both(series, (0, 2000), (2.5, 3.7))
    assert ours == theirs


def test_a_real_shape_step_lines_over_a_slope() -> None:
    xs = list(range(0, 1088, 7))
    slope = Series(xs, [2.63 + x * 2e-4 for x in xs], "braille", COLORS[0])
    steps = Series(xs, [3.11 if x < 1000 else 3.19 for x in xs], "braille", COLORS[2])
    ours, theirs = both([slope, steps], (0, 2000), (2.5, 3.3))
    assert ours == theirs
    assert any(ch != " " and ch >= "\u2800" for row in ours[0] for ch in row)


def test_nothing_is_drawn_on_a_canvas_of_no_size() -> None:
    plt = Plot()
    plt.plotsize(8, 3)
    frame_signal(plt, (0, 1), (0, 1))
    plt.build()
    before = [row[:] for row in plt.monitor.matrix.marker]
    draw_series(plt.monitor.matrix, [Series([0, 1], [0, 1], "braille", "red")], (0, 1), (0, 1))
    assert plt.monitor.matrix.marker == before


def test_dropping_the_inner_points_of_flat_runs_draws_the_same() -> None:
    from vramtui.tui.plotdata import drop_flat_interior

    rng = random.Random(7)
    xs = list(range(0, 2000, 13))
    ys = [round(3.0 + 0.1 * (x // 400) + rng.choice([0] * 9 + [0.02]), 3) for x in xs]
    kept_x, kept_y = drop_flat_interior(xs, ys)
    assert len(kept_x) < len(xs) / 2
    assert (kept_x[0], kept_x[-1]) == (xs[0], xs[-1]) and max(kept_y) == max(ys)
    full, _ = both([Series(xs, ys, "braille", COLORS[0])], (0, 2000), (2.9, 3.5))
    fewer, _ = both([Series(kept_x, kept_y, "braille", COLORS[0])], (0, 2000), (2.9, 3.5))
    assert fewer == full
