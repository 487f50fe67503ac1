"""The plot's canvas: plotext's matrices to Rich/Textual without the ANSI round trip."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual_plotext.plot import Plot

from vramtui.tui.widgets.plot_canvas import matrix_strips, matrix_text


def figure() -> Plot:
    plt = Plot()
    plt.plotsize(60, 16)
    plt.theme("pro")
    plt.xlim(0, 100)
    plt.hline(3.5, (220, 60, 60))
    plt.plot([0, 10, 50, 99], [1, 2, 4, 3], marker="braille", color=(80, 200, 120))
    plt.plot([0, 40, 99], [0.5, 1.5, 2.5], marker="braille", color="orange")
    plt.xlabel("token")
    return plt


def test_matrix_text_is_what_rich_decodes_from_plotext_ansi() -> None:
    plt = figure()
    expected = Text.from_ansi(plt.build())
    got = matrix_text(plt.monitor.matrix)
    assert got.plain == expected.plain
    assert got.spans == expected.spans


def test_matrix_strips_are_the_text_lines_over_a_base_style() -> None:
    plt = figure()
    plt.build()
    matrix = plt.monitor.matrix
    base = Style(bgcolor="black")
    strips = matrix_strips(matrix, base)
    lines = matrix_text(matrix).plain.split("\n")[:-1]
    assert [strip.text for strip in strips] == lines
    assert all(strip.cell_length == matrix.cols for strip in strips)
    assert all(seg.style is not None for strip in strips for seg in strip)
