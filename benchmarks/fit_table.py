"""docs/fit.md's table: for 8, 12, 16, 24, 48 and 80 GB cards, the largest catalogue model
of each family that generates 2000 tokens (prompt 8, batch 1, sdpa), and its precision.

Every cell is a prediction of `vramtui fit` (nothing runs on a device). A card of N GB
is read as N GiB, as vendors sell it, with what a process sees and its CUDA context
assumed as `vramtui fit` assumes them for a card it has not measured (models/cards.py),
and fit's default 5 % margin. The precisions tried, in order: fp16, int8 (bitsandbytes
LLM.int8), nf4 (bitsandbytes 4-bit); a cell names the family's largest model that fits
in any of them, and the first precision in which it does.

    python benchmarks/fit_table.py --write docs/fit.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common  # noqa: E402, F401  (this checkout's vramtui first)

from vramtui.errors import UsageError  # noqa: E402
from vramtui.models.cards import CONTEXT_ASSUMED, Card, GiB, card_target  # noqa: E402
from vramtui.models.catalogue import Entry, families  # noqa: E402
from vramtui.predict.fit_search import Budget, Search  # noqa: E402
from vramtui.predict.planner import GeneratePlanner, Setting  # noqa: E402

SIZES_GB = (8, 12, 16, 24, 48, 80)
PRECISIONS = ("none", "int8", "nf4")
SHOWN = {"none": "fp16", "int8": "int8", "nf4": "nf4"}
MARGIN = 0.05
ASKED = Setting(prompt_tokens=8, tokens=2000, batch=1)
# (model, card size in GB) pairs whose cell a GPU run has checked (benchmarks/fit_check.sh
# under a cap of the card's usable memory); none yet.
CHECKED: frozenset[tuple[str, int]] = frozenset()
BEGIN, END = "<!-- fit-table: benchmarks/fit_table.py -->", "<!-- /fit-table -->"


def card(size_gb: int) -> Card:
    return Card(f"{size_gb}gb", f"a {size_gb} GB card", f"{size_gb} GB", size_gb * GiB, "?")


def precisions(planner: GeneratePlanner) -> list[str]:
    """The precisions the planner estimates, in PRECISIONS' order."""
    out = []
    for quant in PRECISIONS:
        try:
            planner.check("generate", quant)
        except UsageError:
            continue
        out.append(quant)
    return out


def largest_fitting(size: int, search: Search, models: list[Entry], quants: list[str]) -> str:
    """The family's largest model that fits in any precision, as a cell."""
    for model in sorted(models, key=lambda m: m.params, reverse=True):
        for quant in quants:
            row = search.row(model, Setting(**{**ASKED.__dict__, "quant": quant}))
            if row.fits:
                mark = " ✓" if (model.name, size) in CHECKED else ""
                approx = "" if row.peak.basis == "exact" else " ≈"
                return f"{model.name} ({SHOWN[quant]}){approx}{mark}"
    return "–"


def table() -> str:
    planner = GeneratePlanner()
    quants = precisions(planner)
    searches = []
    for size in SIZES_GB:
        target = card_target(card(size))
        margin = int(target.total_bytes * MARGIN)
        searches.append(Search(planner, Budget(target.total_bytes, target.context_bytes, margin)))
    header = "| family | " + " | ".join(f"{s} GB" for s in SIZES_GB) + " |"
    lines = [header, "| --- |" + " --- |" * len(SIZES_GB)]
    for family, models in families().items():
        cells = [
            largest_fitting(size, search, models, quants)
            for size, search in zip(SIZES_GB, searches, strict=True)
        ]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    usable = ", ".join(
        f"{s} GB: {s_.budget.usable_bytes / 1e9:.2f} GB"
        for s, s_ in zip(SIZES_GB, searches, strict=True)
    )
    notes = [
        "",
        f"Precisions estimated: {', '.join(SHOWN[q] for q in quants)}. Usable by the "
        f"allocator (the card less 1.03 %, the CUDA context and the 5 % margin): {usable}. "
        f"CUDA context: {CONTEXT_ASSUMED}.",
        "",
        "≈: the model's memory from its config's numbers (no trace of its code); "
        "✓: checked on a GPU. Written by `benchmarks/fit_table.py`.",
    ]
    return "\n".join(lines + notes)


def write(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Rewrites the page's block between `begin` and `end` with `text`."""
    page = path.read_text()
    if begin not in page or end not in page:
        raise SystemExit(f"{path} has no {begin} ... {end} block")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="the page whose table block to rewrite")
    args = parser.parse_args()
    text = table()
    if args.write:
        write(args.write, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
