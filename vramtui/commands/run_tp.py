"""`vramtui run --tp N`: a tensor-parallel run, every rank of this node recorded.

Checked before anything runs (the flags, the model's tp_plan, the rendezvous port);
then the launcher starts the ranks, the lowest rank's progress is drawn, and every
rank is kept: the JSON summary lists each (rank_summary), the CSV has each rank's rows
with its rank, and the ranks are printed one row each.
"""

from __future__ import annotations

import argparse
import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from vramtui.commands.common import build_spec, say_variant
from vramtui.commands.headless import run_in_thread, stderr_line
from vramtui.commands.out_option import saved_line
from vramtui.commands.run import Progress, check_outputs, exit_code
from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from vramtui.measure import device_inventory
from vramtui.measure import events as ev
from vramtui.measure.rank_summary import tp_summary
from vramtui.measure.ranks import RankRecorder, RankSet
from vramtui.measure.summary_format import typed_summary
from vramtui.measure.tp_launch import TpLaunch
from vramtui.predict.tp_shard import TpShares, shares_for
from vramtui.report.export import CSV_COLUMNS_RANKS, atomic_write, csv_text
from vramtui.report.ranks_text import ranks_text
from vramtui.report.sessions import autosave
from vramtui.report.summary_text import summary_text
from vramtui.runspec import DeviceList, ResolvedRun, resolve


class LeadProgress:
    """The progress line of this node's lowest rank, once it has connected."""

    def __init__(self, recorder: RankRecorder, enabled: bool) -> None:
        self.recorder = recorder
        self.enabled = enabled
        self.inner: Progress | None = None

    def __call__(self, event: ev.Event) -> None:
        if self.inner is None:
            sessions = self.recorder.sessions
            self.inner = Progress(sessions[min(sessions)], self.enabled)
        self.inner(event)


def ranks_csv(ranks: RankSet) -> str:
    """Every rank's CSV rows, rank by rank, each with its rank in a last column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i, (rank, view) in enumerate(sorted(ranks.views.items())):
        rows = list(csv.reader(io.StringIO(csv_text(view))))
        if i == 0:
            writer.writerow(CSV_COLUMNS_RANKS)
        writer.writerows([*row, rank] for row in rows[1:])
    return out.getvalue()


def summary_of(ranks: RankSet, shares: TpShares) -> dict[str, Any]:
    launch = ranks.launch
    described = {"tp": launch.tp, "nnodes": launch.nnodes, "node_rank": launch.node_rank,
                 "rdzv_endpoint": launch.rdzv_endpoint}  # fmt: skip
    predicted = {r.rank: r.weights_bytes for r in shares.ranks}
    replicated = shares.ranks[0].replicated_bytes if shares.ranks else None
    return tp_summary(ranks.views, described, predicted, replicated)


def keep(ranks: RankSet, saved: dict[str, Any], args: argparse.Namespace, folder: Path) -> bool:
    """The files asked for, and the run in the session folder: the lowest rank's session
    with every rank in its JSON and CSV."""
    import json

    text = json.dumps(saved, indent=2, default=str) + "\n"
    table = ranks_csv(ranks)
    try:
        if args.json:
            atomic_write(args.json, text)
        if args.csv:
            atomic_write(args.csv, table)
        kept = autosave(ranks.lead, folder, datetime.now())
        atomic_write(kept.json, text)
        atomic_write(kept.csv, table)
        stderr_line(saved_line(kept))
    except OSError as exc:
        stderr_line(f"vramtui: cannot write the run's files: {exc.strerror or exc}")
        return False
    return True


def check_gpus(resolved: ResolvedRun, launch: TpLaunch, found: DeviceList) -> None:
    """One GPU a rank: a GPU run starts no more ranks on a node than it has GPUs."""
    if resolved.backend != "cuda" or not found.gpus_counted:
        return
    gpus = sum(1 for c in found.choices if c.backend == "cuda")
    if launch.nproc_per_node > gpus:
        raise UsageError(
            f"--tp {launch.tp} over {launch.nnodes} node(s) starts {launch.nproc_per_node} "
            f"ranks here, one a GPU, and this node has {gpus}",
            field="tp",
        )


def run_tp(args: argparse.Namespace, launch: TpLaunch, folder: Path) -> int:
    check_outputs(args.csv, args.json, args.force)
    found = device_inventory.available()
    resolved = say_variant(resolve(build_spec(args, tp=launch.tp), found))
    check_gpus(resolved, launch, found)
    shares = shares_for(resolved.config, resolved.dtype, launch.tp)  # no tp_plan: refused here
    recorder = RankRecorder(resolved, launch)
    progress = LeadProgress(recorder, enabled=not args.quiet)
    ranks, interrupted = run_in_thread(
        lambda: recorder.run(progress), lambda signal: recorder.cancel(signal.reason)
    )
    if ranks is None:
        return EXIT_INTERRUPTED
    saved = summary_of(ranks, shares)
    written = keep(ranks, saved, args, folder)
    print(summary_text(typed_summary(ranks.lead)))
    print()
    print(ranks_text(saved))
    codes = [exit_code(view, interrupted is not None) for view in ranks.views.values()]
    code = max(codes, key=lambda c: c != EXIT_OK)  # the first failure's code, else OK
    failure = ranks.lead.failure
    if failure and ranks.lead.status != "cancelled":
        stderr_line(f"vramtui: run {ranks.lead.status}: {failure.kind}: {failure.message}")
    return EXIT_FAILED if code == EXIT_OK and not written else code
