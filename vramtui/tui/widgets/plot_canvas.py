"""plotext's canvas as a Rich Text, straight from its character and colour matrices.

plotext writes its figure as one ANSI-coloured string (`set_canvas`) that Rich
then has to parse back (`Text.from_ansi`): most of the cost of a frame of the
plot after the figure itself. This builds the same Text from plotext's
matrices directly; each colour triple's Style is taken once from Rich's own
ANSI decoder, so the result is what `Text.from_ansi(plt.build())` gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from plotext import _utility as ut
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip


@lru_cache(maxsize=256)
def _style(colors: str) -> Style | None:
    """The Style Rich decodes from plotext's ANSI code for one colour triple."""
    if not colors:
        return None
    spans = Text.from_ansi(colors + "x" + ut.ansi_end).spans
    style = spans[0].style if spans else None
    return Style.parse(style) if isinstance(style, str) else style


def _rows(matrix: Any) -> Iterator[list[tuple[str, Style | None]]]:
    """Each row, top first, as runs of characters of one colour triple."""
    cols = matrix.cols
    for row in reversed(matrix.Rows):
        markers = matrix.marker[row]
        # (fullground, style, background) per cell; colours may be lists (RGB)
        colors = list(
            zip(matrix.fullground[row], matrix.style[row], matrix.background[row], strict=True)
        )
        runs: list[tuple[str, Style | None]] = []
        start = 0
        for col in range(1, cols + 1):
            if col == cols or colors[col] != colors[start]:
                runs.append(
                    ("".join(markers[start:col]), _style(ut.colors_to_ansi(*colors[start])))
                )
                start = col
        yield runs


def matrix_text(matrix: Any) -> Text:
    """The Text of plotext's `matrix_class`: rows top first, as set_canvas writes them."""
    text = Text()
    for runs in _rows(matrix):
        for chars, style in runs:
            text.append(chars, style)
        text.append("\n")  # each row ends with one, as in set_canvas
    return text


def matrix_strips(matrix: Any, base: Style) -> list[Strip]:
    """The same as Textual strips, one per row, each run's style over `base`."""
    return [
        Strip([Segment(chars, base + style if style else base) for chars, style in runs])
        for runs in _rows(matrix)
    ]
