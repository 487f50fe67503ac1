"""`vramtui fit` over the catalogue strides the cache's replay near the line: its answers
against the exact replay's. Every row of the flags is searched twice in this process,
as the catalogue is (more models than commands/fit.py's EXACT_ROWS: replays strided)
and as --model is (every replay step by step); where fits, max_context or max_batch
differ, the strided answer must be one the exact need puts within the bound
(kv_replay.strided_bound) of the line: the exact need at the strided answer at most
the bound over the budget, and one step further at most the bound under it.

    python benchmarks/fit_strided_rows.py --gpu rtx-4090 --quant none,int8,nf4 \
        --out benchmarks/results/fit_speed/fit_strided_rows-rtx-4090-cpu-dev.json

Exit 0 when every row is the same or within the bound, 1 when one is not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from vramtui.cli import build_parser  # noqa: E402
from vramtui.commands import fit  # noqa: E402
from vramtui.models.catalogue import CATALOGUE  # noqa: E402
from vramtui.predict.calibration import DEFAULT  # noqa: E402
from vramtui.predict.fit_search import MAX_BATCH, FitRow  # noqa: E402
from vramtui.predict.kv_replay import strided_bound  # noqa: E402
from vramtui.predict.planner import GeneratePlanner, Setting  # noqa: E402


def rows_of(flags: list[str], exact: bool) -> tuple[list[FitRow], float]:
    """The rows of `vramtui fit FLAGS`, the replays strided (the catalogue's way) or not,
    and the search's CPU seconds."""
    args = build_parser().parse_args(["fit", *flags])
    kept = fit.EXACT_ROWS
    fit.EXACT_ROWS = len(CATALOGUE) if exact else kept
    started = time.process_time()
    try:
        _, _, rows = fit.plan(args, GeneratePlanner())
    finally:
        fit.EXACT_ROWS = kept
    return rows, time.process_time() - started


def over(row: FitRow, setting: Setting) -> int:
    """The exact need at `setting` less the row's budget."""
    entry = CATALOGUE[row.model]
    return GeneratePlanner().peak(entry, setting).need_bytes - row.usable_bytes


def within(row: FitRow, answer: int, at: Any, first: int, limit: int, bound: int) -> bool:
    """`answer` (found by the strided search) is one the exact need allows: it fits
    within the bound, and the next step up is short by more than minus the bound."""
    fits = answer < first or over(row, at(answer)) <= bound
    next_short = answer >= limit or over(row, at(max(answer + 1, first))) > -bound
    return fits and next_short


def compare(strided: FitRow, exact: FitRow) -> dict[str, Any] | None:
    """None where the two rows answer the same; else what differs and whether the bound
    allows it."""
    keys = ("fits", "max_context", "max_batch")
    if all(getattr(strided, k) == getattr(exact, k) for k in keys):
        return None
    entry = CATALOGUE[strided.model]
    bound = strided_bound(DEFAULT.rules, entry.layers)
    s = strided.setting
    positions = GeneratePlanner().positions(entry)
    ok = True
    if strided.fits != exact.fits:
        ok &= abs(over(strided, s)) <= bound
    if strided.max_context != exact.max_context:
        ok &= within(strided, strided.max_context, s.with_context, s.held + 1, positions, bound)
    if strided.max_batch != exact.max_batch:
        ok &= within(strided, strided.max_batch, s.with_batch, 1, MAX_BATCH, bound)
    return {
        "model": strided.model,
        "quant": s.quant,
        **{f"{k}_strided": getattr(strided, k) for k in keys},
        **{f"{k}_exact": getattr(exact, k) for k in keys},
        "bound_bytes": bound,
        "within_bound": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gpu", default="rtx-4090")
    parser.add_argument("--quant", default="none,int8,nf4")
    parser.add_argument("--flags", default="", help="more fit flags, e.g. '--batch 4'")
    args = parser.parse_args()
    flags = ["--gpu", args.gpu, "--quant", args.quant, *args.flags.split()]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # no trace cached: every non-OPT row approximate
        strided, strided_cpu = rows_of(flags, exact=False)
        exact, exact_cpu = rows_of(flags, exact=True)
        found = [compare(s, e) for s, e in zip(strided, exact, strict=True)]
    differ = [d for d in found if d is not None]
    result = {
        "what": __doc__.splitlines()[0],
        "flags": flags,
        "rows": len(strided),
        "rows_marked_tilde": sum(not r.peak.replayed for r in strided),  # fragmentation or strided
        "rows_differing": len(differ),
        "all_within_bound": all(d["within_bound"] for d in differ),
        "differing": differ,
        "search_cpu_s_strided": round(strided_cpu, 3),
        "search_cpu_s_exact": round(exact_cpu, 3),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    write_json(args.out, result)
    print(
        f"vramtui fit {' '.join(flags)}: {len(strided)} rows, {len(differ)} differ from the "
        f"exact replay's, all within the bound: {result['all_within_bound']}; search "
        f"{strided_cpu:.2f} s CPU strided, {exact_cpu:.2f} s exact"
    )
    return 0 if result["all_within_bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
