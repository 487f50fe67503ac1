"""`vramtui bench`: sweep models x token budgets x other axes, a fresh engine per cell."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from vramtui.commands.common import (
    add_cap_argument,
    add_placement_arguments,
    build_spec,
    positive_int,
    whole_number,
)
from vramtui.commands.headless import run_in_thread, stderr_line, write_stderr
from vramtui.commands.tp_option import add_bench_tp_argument, tp_cells
from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from vramtui.measure import events as ev
from vramtui.measure.device_inventory import available
from vramtui.measure.session import Session
from vramtui.models.catalogue import model_names
from vramtui.report import bench_table as bench_report
from vramtui.report.export import atomic_write, check_writable
from vramtui.report.tables import table
from vramtui.runspec import ATTENTION, CACHES, DTYPES, model_label
from vramtui.runspec.quant import QUANTS
from vramtui.sweep import grid as bench
from vramtui.sweep.lanes import Lanes, deal, parse_devices
from vramtui.sweep.results import CellResult
from vramtui.sweep.sweep_runner import AHEAD, Sweep
from vramtui.units import format_bytes


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="sweep models x token budgets (x attn, dtype, batch): one table, CSV, markdown",
        description=(
            "Run every combination of the listed values, each cell in a fresh engine "
            "process, and print one table. List-valued flags are comma-separated."
        ),
    )
    parser.add_argument(
        "--models", "-m", metavar="LIST", help="catalogue models, by name or hub id: "
        + ", ".join(model_names()),
    )  # fmt: skip
    parser.add_argument("--config", metavar="LIST", help="config.json paths to build from")
    parser.add_argument("--checkpoint", metavar="LIST", help="checkpoint folders (or hub ids)")
    parser.add_argument("--tokens", "-n", metavar="LIST", default="200", help="new tokens: 20,2000")
    parser.add_argument(
        "--prompt-tokens", metavar="LIST", default="8", help="random prompt lengths: 8,2000"
    )
    parser.add_argument("--batch", "-b", metavar="LIST", default="1", help="batch sizes: 1,8")
    dtypes = ",".join(DTYPES)
    parser.add_argument(
        "--dtype", metavar="LIST", help=f"{dtypes} (default: float16 on GPUs, float32 on CPU)"
    )
    parser.add_argument(
        "--attn", metavar="LIST", default="sdpa", help="attention: " + ",".join(ATTENTION)
    )
    parser.add_argument(
        "--quant", metavar="LIST", default="none",
        help="weight quantizations to sweep: " + ",".join(QUANTS) + ' (needs ".[quant]")',
    )  # fmt: skip
    parser.add_argument(
        "--double-quant", action="store_true",
        help="bitsandbytes 4-bit cells quantize their quantization constants too",
    )  # fmt: skip
    parser.add_argument(
        "--cache", choices=CACHES, default="dynamic",
        help="KV cache of every cell: dynamic, static or offloaded",
    )  # fmt: skip
    parser.add_argument("--repeat", type=positive_int, default=1, metavar="K", help="runs per cell")
    parser.add_argument(
        "--device", "-d", default="auto", help="cuda:N, mps or cpu; auto is the first GPU"
    )
    parser.add_argument(
        "--devices", metavar="LIST",
        help="run cells side by side, one at a time on each device listed: cuda:0,cuda:1 "
        "(each cell still in its own fresh engine process, on one device)",
    )  # fmt: skip
    add_cap_argument(parser)
    add_placement_arguments(parser)
    add_bench_tp_argument(parser)
    parser.add_argument("--seed", type=positive_int, default=0, help="seed of the random prompts")
    parser.add_argument(
        "--cudnn-sdpa", action="store_true", help="let sdpa use cuDNN attention (slow first pass)"
    )
    parser.add_argument("--allow-download", action="store_true", help="let --checkpoint fetch ids")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .bin (pickle) files")
    parser.add_argument("--csv", metavar="FILE", help="one row per cell, rewritten as cells end")
    parser.add_argument("--markdown", metavar="FILE", help="the table as markdown for a README")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-overlap",
        action="store_true",
        help="start each cell's engine only once the previous one has ended (by default the "
        "next engines do their imports, no CUDA, while a cell runs)",
    )
    parser.add_argument(
        "--fork",
        action="store_true",
        help="fork every engine from one process that imported torch and transformers once "
        "(faster sweeps, with or without --no-overlap; not the default: on an H200 one cell "
        "of ten reserved 2 MiB less than spawned engines do, and on the CPU RSS is lower)",
    )
    parser.add_argument(
        "--ahead", type=whole_number, metavar="K",
        help=f"engines started ahead while a cell runs (default {AHEAD}, at most the cores "
        "less one; 0 is --no-overlap)",
    )  # fmt: skip
    parser.set_defaults(command=run)


def axes_from_args(args: argparse.Namespace) -> bench.Axes:
    models = [bench.ModelRef(name) for name in _list("--models", args.models)]
    models += [bench.ModelRef(model_label(p), "config", p) for p in _list("--config", args.config)]
    models += [
        bench.ModelRef(model_label(p), "checkpoint", p)
        for p in _list("--checkpoint", args.checkpoint)
    ]
    dtypes: list[str | None] = [None]
    if args.dtype:
        dtypes = list(bench.parse_choices("--dtype", args.dtype, DTYPES))
    base = build_spec(argparse.Namespace(
        device=args.device, seed=args.seed, allow_download=args.allow_download,
        allow_pickle=args.allow_pickle, cudnn_sdpa=args.cudnn_sdpa, cache=args.cache,
        device_map=args.device_map, max_memory=args.max_memory, cap=args.cap,
        double_quant=args.double_quant,
    ))  # fmt: skip
    return bench.Axes(
        models=models,
        tokens=bench.parse_counts("--tokens", args.tokens),
        prompt_tokens=bench.parse_counts("--prompt-tokens", args.prompt_tokens),
        batch=bench.parse_counts("--batch", args.batch),
        dtype=dtypes,
        attn=bench.parse_choices("--attn", args.attn, ATTENTION),
        quant=bench.parse_choices("--quant", args.quant, QUANTS),
        repeat=args.repeat,
        base=base,
    )


def _list(flag: str, text: str | None) -> list[str]:
    return bench.parse_names(flag, text) if text else []


class SweepProgress:
    """Cell k/K and the running cell's token i/N on one stderr line; a line per finished cell."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.finished = 0
        self.cell: bench.Cell | None = None
        self.session: Session | None = None
        self._last = 0.0

    def label(self, cell: bench.Cell) -> str:
        s = cell.spec
        rep = f" #{cell.repeat}" if cell.repeat > 1 else ""
        quant = f" {s.quant}" if s.quant != "none" else ""
        return f"cell {cell.index}/{self.total} {s.model} {s.tokens} tok {s.attn}{quant}{rep}"

    def start(self, cell: bench.Cell, session: Session) -> None:
        self.cell, self.session = cell, session
        self._last = 0.0
        self.draw(force=True)

    def __call__(self, event: ev.Event) -> None:
        self.draw()

    def draw(self, force: bool = False) -> None:
        if not self.enabled or self.cell is None or self.session is None:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        s = self.session.snapshot()
        budget = self.cell.spec.tokens
        share = (self.finished + min(s.tokens_done / budget, 1.0)) / self.total
        width = 20
        filled = int(width * share)
        memory = s.latest("nvml_process") or s.latest("reserved") or s.latest("allocated")
        rate = s.live_tokens_per_s()
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.label(self.cell)} · "
            f"{s.current_phase} token {s.tokens_done}/{budget} · {rate or 0:.1f} tok/s · "
            f"{format_bytes(memory)}"
        )
        self._write(line, final=False)

    def done(self, result: CellResult) -> None:
        self.finished += 1
        if not self.enabled:
            return
        figures = bench_report.figure_cells([result])
        outcome = figures[1]
        rate = f", {figures[-1]} tok/s" if result.status == "completed" else ""
        pid = f", pid {result.engine_pid}" if result.engine_pid else ""
        head = "peak allocated " if result.status == "completed" else ""
        self._write(f"{self.label(result.cell)}: {head}{outcome}{rate}{pid}", final=True)

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            write_stderr("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            write_stderr(line + "\n")


class Outputs:
    """The CSV and markdown files, rewritten whole (atomically) after every cell."""

    def __init__(self, args: argparse.Namespace, axes: bench.Axes) -> None:
        self.csv = args.csv
        self.markdown = args.markdown
        self.axes = axes
        self.failed: set[str] = set()
        if self.csv and self.markdown and self.csv == self.markdown:
            raise UsageError("--csv and --markdown name the same file")
        for path in (self.csv, self.markdown):
            if path:
                check_writable(path, force=args.force)

    def write(self, results: list[CellResult]) -> None:
        """Rewrite both files; a file that cannot be written is said once, the sweep goes on."""
        for path, render in (
            (self.csv, bench_report.csv_text),
            (self.markdown, lambda r: bench_report.markdown_text(r, self.axes)),
        ):
            if not path or path in self.failed:
                continue
            try:
                atomic_write(path, render(results))
            except OSError as exc:
                self.failed.add(path)
                stderr_line(f"vramtui: cannot write {path}: {exc.strerror or exc}")


def report_text(results: list[CellResult], axes: bench.Axes) -> str:
    varying = axes.varying()
    header, rows = bench_report.table_rows(results, varying, group_repeats=False)
    where = bench_report.environment_line(results)
    parts = [
        f"{where} — {bench_report.constants_line(results, varying)}",
        "",
        table(rows, header),
        "",
    ]
    parts += bench_report.method_notes(results, grouped=False)
    parts += [f"note: {n}" for n in bench_report.failure_notes(results, varying)]
    return "\n".join(parts)


def interrupted_counts(results: list[CellResult], cells: list[bench.Cell]) -> str:
    """'1 completed, 1 cancelled (its figures so far kept), 1 not run'."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    parts = [f"{n} {outcome}" for outcome, n in counts.items()]
    if counts.get("cancelled"):
        parts[list(counts).index("cancelled")] += " (its figures so far kept)"
    if len(cells) > len(results):
        parts.append(f"{len(cells) - len(results)} not run")
    return ", ".join(parts)


def exit_code(results: list[CellResult], interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    ok = all(r.status == "completed" or r.oom for r in results)
    return EXIT_OK if ok else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    if args.ahead is not None and args.ahead < 0:
        raise UsageError(f"--ahead takes 0 or more engines, not {args.ahead}")
    tp_recorder = tp_cells(args)
    axes = axes_from_args(args)
    cells, left_out = axes.plan()
    outputs = Outputs(args, axes)
    for line in left_out:
        stderr_line(f"vramtui: left out {line}")
    progress = SweepProgress(len(cells), enabled=not args.quiet)
    if not args.quiet:
        stderr_line(f"vramtui bench: {len(cells)} cells, each in a fresh engine process")
        if tp_recorder:
            stderr_line(f"vramtui bench: --tp {args.tp}, each cell's figures are its rank 0's")
    done: list[CellResult] = []
    lock = threading.Lock()  # lanes end cells from their own threads

    def on_cell_done(result: CellResult) -> None:
        with lock:
            done.append(result)
            done.sort(key=lambda r: r.cell.index)
            progress.done(result)
            outputs.write(done)

    ahead = 0 if args.no_overlap else args.ahead  # None: as many as this machine's cores allow
    fork = args.fork  # with --no-overlap too: each engine forked once the last has ended
    sweep: Sweep | Lanes
    if args.devices:
        there = available()
        lanes = deal(cells, parse_devices(args.devices, there), there)
        cores = max(1, (os.cpu_count() or 1) // len(lanes))  # a lane's share, for its engines ahead
        sweep = Lanes(
            lanes,
            lambda lane: Sweep(
                lane, ahead=ahead, cores=cores, on_cell_done=on_cell_done, fork=fork
            ),
        )
    else:
        sweep = Sweep(
            cells,
            make_recorder=tp_recorder,
            ahead=0 if tp_recorder else ahead,
            fork=fork and not tp_recorder,
            on_cell_start=progress.start,
            on_cell_done=on_cell_done,
            on_event=progress,
        )
    _, interrupted = run_in_thread(sweep.run, lambda signal: sweep.cancel(signal.reason))
    results = list(sweep.results)
    if sweep.aborted:  # the sweep itself is wrong (a device not there): no table
        stderr_line(f"vramtui: {sweep.aborted}")
        return EXIT_USAGE
    if results:
        print(report_text(results, axes))
    if interrupted:
        stderr_line(f"vramtui: interrupted ({interrupted}); {interrupted_counts(results, cells)}")
    for path in (outputs.csv, outputs.markdown):
        if path and results and path not in outputs.failed:
            stderr_line(f"vramtui: wrote {path}")
    code = exit_code(results, interrupted is not None)
    return EXIT_FAILED if outputs.failed and code == EXIT_OK else code
