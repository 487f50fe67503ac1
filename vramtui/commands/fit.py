"""`vramtui fit`: which catalogue models fit a card, at what context and batch (no GPU
needed), and `--check`, a launch gate for one model: exit 0 when it fits, 3 when not."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from vramtui.commands.common import whole_number
from vramtui.errors import EXIT_OK, EXIT_OOM, UsageError
from vramtui.measure import nvml
from vramtui.models.cards import (
    Target,
    cap_target,
    card_for_device,
    card_names,
    card_target,
    lookup_card,
    memory_target,
)
from vramtui.models.catalogue import CATALOGUE, Entry, lookup
from vramtui.predict.fit_search import Budget, FitRow, Search
from vramtui.predict.planner import WORKLOADS, GeneratePlanner, Planner, Setting
from vramtui.predict.quantized import FOUR_BIT
from vramtui.predict.tracing.traces import TraceError
from vramtui.predict.training.planner import NotTraced, TrainPlanner, WorkloadPlanner
from vramtui.report.fit_text import check_line, header_lines, json_row, report
from vramtui.runspec import ATTENTION
from vramtui.runspec.cap import parse_cap
from vramtui.runspec.quant import QUANTS, method
from vramtui.runspec.train_spec import METHODS, OPTIMIZERS
from vramtui.units import parse_size

DTYPES = ("float16", "bfloat16")
EXIT_WONT_FIT = EXIT_OOM  # --check: the setting does not fit (as a run out of memory exits)
EXACT_ROWS = 4  # at most this many models: every row's figures replayed
DQ = "+dq"  # nf4+dq: double quant


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="which models fit a GPU, the largest context and batch; --check gates a launch",
        description="Which catalogue models fit a card, at what context and batch, in which "
        "precision: predicted, no GPU needed. --check exits 0 when one setting fits, "
        f"{EXIT_WONT_FIT} when it does not, 2 on bad input.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpu", metavar="NAME", help="a card: " + ", ".join(card_names()))
    where.add_argument("--memory", metavar="SIZE", help="a card's memory as a process sees it: "
                       "24GiB, 16GB (the CUDA context is taken from it)")  # fmt: skip
    where.add_argument("--cap", metavar="SIZE", help="the allocator capped as `vramtui run "
                       "--cap` does (the CUDA context is outside the cap)")  # fmt: skip
    parser.add_argument("--workload", choices=WORKLOADS, default="generate")
    parser.add_argument("--quant", default="none", help="precisions, comma-separated: "
                        + ", ".join(QUANTS) + " (nf4+dq, fp4+dq: double quant)")  # fmt: skip
    parser.add_argument("--double-quant", action="store_true", help="the 4-bit methods "
                        "asked (nf4, fp4) with their absmax quantized again")  # fmt: skip
    parser.add_argument("--context", type=whole_number, help="prompt + new tokens")
    parser.add_argument("--tokens", "-n", type=whole_number, default=2000, help="new tokens")
    parser.add_argument("--prompt-tokens", type=whole_number, default=8)
    parser.add_argument("--batch", "-b", type=whole_number, default=1)
    parser.add_argument("--grow", choices=("tokens", "prompt"), default="tokens",
                        help="what the largest context lengthens: the new tokens (the "
                        "prompt held) or the prompt (the new tokens held)")  # fmt: skip
    parser.add_argument("--dtype", choices=DTYPES, help="float16 to generate, bfloat16 "
                        "to fine-tune (qlora: the dtype its 4-bit layers compute in)")  # fmt: skip
    parser.add_argument("--attn", choices=ATTENTION, default="sdpa")
    parser.add_argument("--model", "-m", help="one catalogue model, by name or hub id")
    parser.add_argument("--filter", metavar="TEXT", help="models whose name or family has TEXT")
    parser.add_argument("--margin", default="5%", help="kept free: a share of the card (5%%) "
                        "or a size (1GiB)")  # fmt: skip
    parser.add_argument("--context-overhead", metavar="SIZE", help="the CUDA context and "
                        "libraries, instead of the card's figure")  # fmt: skip
    parser.add_argument("--optim", choices=OPTIMIZERS, default="adamw",
                        help="fine-tuning: the optimizer, as `vramtui train --optim`")  # fmt: skip
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="fine-tuning: transformers' activation checkpointing")  # fmt: skip
    parser.add_argument("--trace", action="store_true", help="trace each model's code at "
                        "the sizes searched (a child process a traced size, cached): "
                        "generation otherwise reads cached traces or approximates from the "
                        "config; fine-tuning otherwise traces one model (--model) and lists "
                        "the others not traced yet")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.add_argument("--check", action="store_true", help=f"one model and setting: exit 0 "
                        f"when it fits, {EXIT_WONT_FIT} when it does not, one line saying "
                        "by how much")  # fmt: skip
    parser.set_defaults(command=run)


def target_of(args: argparse.Namespace) -> Target:
    """The memory the plan is for: --gpu, --memory, --cap, else the GPU here."""
    if args.gpu:
        target = card_target(lookup_card(args.gpu))
    elif args.memory:
        size = parse_size(args.memory, field="memory", need_unit=True)
        target = memory_target(size, f"{args.memory} (--memory)", "--memory")
    elif args.cap:
        target = cap_target(parse_cap(args.cap))
    else:
        target = _this_gpu()
    if args.context_overhead:
        size = parse_size(args.context_overhead, field="context_overhead", need_unit=True)
        target = target.with_context(size, "--context-overhead")
    return target


def _this_gpu() -> Target:
    found = nvml.gpus()
    if not found:
        raise UsageError("no GPU here: pass --gpu NAME (e.g. rtx-4090) or --memory SIZE")
    gpu = found[0]
    card = card_for_device(gpu.name)
    if card is not None:
        return card_target(card)
    return memory_target(gpu.total, f"{gpu.name} (GPU 0)", "NVML's total for GPU 0")


def margin_bytes(text: str, total: int) -> int:
    value = text.strip()
    if value.endswith("%"):
        try:
            share = float(value[:-1])
        except ValueError:
            share = -1.0
        if not 0 <= share < 100:
            raise UsageError(f"--margin {text!r}: a share from 0% to 99%, or a size")
        return int(total * share / 100)
    return parse_size(value, field="margin", need_unit=True)


def setting_of(args: argparse.Namespace, quant: str, double_quant: bool = False) -> Setting:
    tokens = args.tokens
    if args.context is not None:
        tokens = args.context - args.prompt_tokens
    for name, value in (("--prompt-tokens", args.prompt_tokens), ("--batch", args.batch)):
        if value <= 0:
            raise UsageError(f"{name} must be positive, got {value}")
    if tokens <= 0:
        raise UsageError(f"the context must exceed the prompt ({args.prompt_tokens} tokens)")
    dtype = args.dtype or ("bfloat16" if args.workload in METHODS else "float16")
    return Setting(args.workload, quant, args.prompt_tokens, tokens, args.batch,
                   dtype, args.attn, args.grow, double_quant)  # fmt: skip


def models_of(args: argparse.Namespace) -> list[Entry]:
    if args.model:
        return [lookup(args.model)]
    chosen = [e for e in CATALOGUE.values() if e.matches(args.filter or "")]
    if not chosen:
        raise UsageError(f"no catalogue model matches {args.filter!r}; see `vramtui models`")
    return chosen


def quants_of(args: argparse.Namespace, planner: Planner) -> list[tuple[str, bool]]:
    """(method, double quant) of each precision asked: `nf4+dq` or --double-quant."""
    out = []
    for text in [q.strip() for q in args.quant.split(",") if q.strip()] or ["(none given)"]:
        name, dq = text.removesuffix(DQ), text.endswith(DQ)
        method(name)  # an unknown name: one line, exit 2
        dq = dq or (args.double_quant and name in FOUR_BIT)
        if dq and name not in FOUR_BIT:
            raise UsageError(f"double quant applies to nf4 and fp4, not --quant {name}")
        planner.check(args.workload, name)
        out.append((name, dq))
    if args.double_quant and not any(name in FOUR_BIT for name, _ in out):
        raise UsageError("--double-quant applies to nf4 and fp4: ask for one with --quant")
    return out


@dataclass(frozen=True)
class Untraced:
    """A model left out of the rows: no cached training trace (tracing not allowed), or
    `why` its step cannot be traced."""

    model: str
    why: str | None = None


def plan(
    args: argparse.Namespace, planner: Planner, untraced: list[Untraced] | None = None
) -> tuple[Target, Budget, list[FitRow]]:
    """Everything checked first, then every row searched; the models whose rows need a
    training trace not taken yet (and not to be taken now) are added to `untraced`, and
    over several models those whose step cannot be traced, with why (with one model
    that is the command's one-line error)."""
    quants = quants_of(args, planner)
    models = models_of(args)
    if args.check and (len(models) != 1 or len(quants) != 1):
        raise UsageError("--check takes one model (--model) and one --quant")
    target = target_of(args)
    margin = margin_bytes(args.margin, target.total_bytes)
    budget = Budget(target.total_bytes, target.context_bytes, margin)
    if budget.usable_bytes <= 0:
        raise UsageError("the context and the margin leave the allocator nothing")
    settings = [setting_of(args, q, dq) for q, dq in quants]
    if args.check and settings[0].context > planner.positions(models[0]):
        limit = planner.positions(models[0])
        raise UsageError(f"{models[0].name} takes {limit} positions at most, not "
                         f"{settings[0].context} (prompt + new tokens)")  # fmt: skip
    few = len(models) <= EXACT_ROWS  # else the replays near the line are strided
    search = Search(planner, budget, exact_rows=few, strided=not few)
    rows: list[FitRow] = []
    for model in models:
        try:
            rows += [search.row(model, s) for s in settings]
        except NotTraced:
            if untraced is None:
                raise
            untraced.append(Untraced(model.name))
        except TraceError as err:
            if untraced is None or len(models) == 1:
                raise
            untraced.append(Untraced(model.name, str(err)))
    return target, budget, rows


def default_planner(args: argparse.Namespace) -> Planner:
    """Generation through the estimator, fine-tuning through the training estimate.
    Fine-tuning is traced as needed for one model (--model) or with --trace, else read
    from cached traces; generation is traced with --trace only (a search traces each
    size it asks for: minutes on a small CPU), else read from cached traces or
    approximated from the config."""
    train = TrainPlanner(args.optim, args.grad_checkpointing, bool(args.model) or args.trace)
    return WorkloadPlanner(GeneratePlanner(args.trace), train)


def untraced_lines(args: argparse.Namespace, models: list[Untraced]) -> list[str]:
    """One line a model without cached traces, with the command that traces them: the
    flags that decide which sizes are traced (its grid sits around the asked setting)."""
    s = setting_of(args, "none")
    flags = [f"--workload {s.workload}", f"--context {s.context}"]
    flags += [f"--batch {s.batch}"] if s.batch != 1 else []
    flags += [f"--attn {s.attn}"] if s.attn != "sdpa" else []
    flags += [f"--dtype {args.dtype}"] if args.dtype else []
    flags += [f"--optim {args.optim}"] if args.optim != "adamw" else []
    flags += ["--grad-checkpointing"] if args.grad_checkpointing else []
    command = "vramtui fit " + " ".join(flags)
    return [
        f"cannot trace: {m.model}: {m.why}"
        if m.why
        else f"not traced yet: {m.model}: {command} -m {m.model} (or --trace: all of them)"
        for m in models
    ]


def run(args: argparse.Namespace, planner: Planner | None = None) -> int:
    planner = planner or default_planner(args)
    untraced: list[Untraced] = []
    target, budget, rows = plan(args, planner, untraced)
    if args.json:
        print(json.dumps([json_row(r, target) for r in rows], indent=2))
    elif args.check:
        print(check_line(rows[0]))
    elif rows:
        lines = header_lines(target, budget, args.margin, rows[0].setting)
        print(report(rows, lines))
    for line in untraced_lines(args, untraced):
        print(line, file=sys.stderr if args.json else sys.stdout)
    if args.check and not rows[0].fits:
        return EXIT_WONT_FIT
    return EXIT_OK
