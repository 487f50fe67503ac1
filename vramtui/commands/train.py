"""`vramtui train`: fine-tuning steps in a fresh engine process, measured phase by phase.

The headless path mirrors `vramtui run`: every flag checked before anything runs (one
line, exit 2), a progress line on stderr, the session kept (its path said), the text
summary on stdout, --json / --csv files, and run's exit codes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from vramtui.commands.common import (
    DEFAULTS,
    add_cap_argument,
    add_quant_arguments,
    add_source_arguments,
    build_spec,
    model_help,
    say_variant,
    whole_number,
)
from vramtui.commands.headless import run_in_thread, stderr_line, write_stderr
from vramtui.commands.out_option import add_out_argument, check_out
from vramtui.commands.ram_check import add_ram_check_argument, check_train_ram
from vramtui.commands.run import check_outputs, exit_code, keep
from vramtui.errors import EXIT_FAILED, EXIT_OK, UsageError
from vramtui.measure import device_inventory
from vramtui.measure import events as ev
from vramtui.measure.recorder import Recorder
from vramtui.measure.session import Session
from vramtui.measure.summary_format import typed_summary
from vramtui.report.summary_text import summary_text
from vramtui.runspec import ATTENTION, DTYPES, ResolvedRun
from vramtui.runspec.train_resolve import prepare_training
from vramtui.runspec.train_spec import (
    METHODS,
    OPTIMIZERS,
    TrainSpec,
)
from vramtui.units import format_bytes

RECIPE = TrainSpec()


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tuning steps (full, LoRA, QLoRA), measured phase by phase",
        description="Train a model for a few steps on random token ids in a fresh engine "
        "process and print each phase's peak and what holds the memory.",
    )
    add_model_arguments(parser)
    add_recipe_arguments(parser)
    parser.add_argument("--csv", metavar="FILE", help="write every sample as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    add_out_argument(parser)
    parser.add_argument("--force", action="store_true", help="overwrite existing export files")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    parser.add_argument(
        "--app", action="store_true",
        help="watch it in the app: memory on a step axis, phase by phase, the breakdown live",
    )  # fmt: skip
    add_ram_check_argument(
        parser,
        need="a lower bound of what it holds (weights; for full: gradients, optimizer states)",
    )
    parser.set_defaults(command=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, built exactly as for generation."""
    parser.add_argument("--model", "-m", default=DEFAULTS.model, help=model_help())
    parser.add_argument(
        "--dtype", choices=DTYPES,
        help="weights (default: bfloat16 on GPUs, float32 on the CPU; QLoRA's compute dtype)",
    )  # fmt: skip
    parser.add_argument("--attn", choices=ATTENTION, default=DEFAULTS.attn, help="attention")
    parser.add_argument(
        "--device", "-d", default=DEFAULTS.device,
        help="cuda:N, mps or cpu; auto is the first GPU, else MPS, else the CPU",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=whole_number, default=DEFAULTS.seed, help="seed of the random token ids"
    )
    add_quant_arguments(parser)
    add_cap_argument(parser)
    add_source_arguments(parser)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the training recipe")
    group.add_argument(
        "--method", choices=METHODS, default=RECIPE.method,
        help="full: every parameter; lora: peft adapters on a frozen base; qlora: the base "
        "in 4-bit nf4 (double quantization), prepared by peft, then LoRA",
    )  # fmt: skip
    group.add_argument("--seq", type=whole_number, default=RECIPE.seq, help="tokens a sequence")
    group.add_argument(
        "--batch", "-b", type=whole_number, default=DEFAULTS.batch,
        help="sequences a micro-batch (one forward)",
    )  # fmt: skip
    group.add_argument(
        "--steps", type=whole_number, default=RECIPE.steps,
        help="optimizer steps (step 1 creates the optimizer's states)",
    )  # fmt: skip
    group.add_argument(
        "--grad-accum", type=whole_number, default=RECIPE.grad_accum,
        help="forward/backward passes per optimizer step",
    )  # fmt: skip
    group.add_argument(
        "--optim", choices=OPTIMIZERS, default=RECIPE.optim,
        help="torch AdamW or SGD, transformers' Adafactor, bitsandbytes' (paged) AdamW8bit",
    )  # fmt: skip
    group.add_argument(
        "--grad-checkpointing", action="store_true",
        help="transformers' activation checkpointing, with its defaults",
    )  # fmt: skip
    group.add_argument("--lora-r", type=whole_number, default=RECIPE.lora_r, help="LoRA rank")
    group.add_argument(
        "--lora-alpha", type=whole_number, default=RECIPE.lora_alpha, help="LoRA alpha"
    )
    group.add_argument(
        "--lora-targets", default=RECIPE.lora_targets,
        help="peft's target_modules: all-linear, or module names, comma-separated",
    )  # fmt: skip


def train_spec(args: argparse.Namespace) -> TrainSpec:
    """The recipe the flags describe (checked by prepare_training)."""
    return TrainSpec(
        base=build_spec(args, tokens=1, prompt_tokens=1),  # generates nothing: --seq says
        method=args.method,
        seq=args.seq,
        steps=args.steps,
        grad_accum=args.grad_accum,
        optim=args.optim,
        grad_checkpointing=args.grad_checkpointing,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_targets=args.lora_targets,
    )


def prepare(args: argparse.Namespace) -> tuple[ResolvedRun, TrainSpec]:
    """Everything checked before anything runs: the recipe, the model, the device, the
    files; the dtype made concrete (bfloat16 on GPUs, float32 on the CPU)."""
    check_outputs(args.csv, args.json, args.force)
    resolved, spec = prepare_training(train_spec(args), device_inventory.available())
    say_variant(resolved)
    check_train_ram(resolved, spec, args.no_ram_check)
    return resolved, spec


class StepProgress:
    """step i/N, phase, tokens/s and memory on one stderr line: at most 10 times a
    second on a terminal; elsewhere (a log) a line at every step."""

    def __init__(self, session: Session, train: TrainSpec, enabled: bool) -> None:
        self.session, self.train, self.enabled = session, train, enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, event: ev.Event) -> None:
        if not self.enabled:
            return
        final = isinstance(event, (ev.Done, ev.Failed))
        now = time.monotonic()
        if self.tty and not final and now - self._last < 0.1:
            return
        if not self.tty and not (final or isinstance(event, ev.TrainStep)):
            return
        self._last = now
        view = self.session.snapshot()
        steps = view.train_steps
        span = sum(s.t_end - s.t_start for s in steps)
        rate = sum(s.tokens for s in steps) / span if span > 0 else 0.0
        memory = view.latest("nvml_process") or view.latest("reserved") or view.latest("allocated")
        line = (
            f"{view.current_phase:<9} step {len(steps)}/{self.train.steps}  "
            f"{rate:8.1f} tok/s  {format_bytes(memory)}"
        )
        write_stderr("\r" + line + ("\n" if final else "") if self.tty else line + "\n")


def run(args: argparse.Namespace) -> int:
    folder = check_out(args.out)  # where the session is kept, checked before anything runs
    if args.app and (args.csv or args.json):
        raise UsageError("--csv and --json are the headless run's files: the app saves the "
                         "session itself (e exports it)")  # fmt: skip
    resolved, spec = prepare(args)
    if args.app:
        return run_in_app(resolved, spec, args.out)
    recorder = Recorder.for_run(resolved, train=spec)
    progress = StepProgress(recorder.session, spec, enabled=not args.quiet)
    _, interrupted = run_in_thread(
        lambda: recorder.run(progress), lambda signal: recorder.cancel(signal.reason)
    )
    if interrupted:
        recorder.session.fail(ev.Failed("cancelled", interrupted.reason, "start"))
    view = recorder.session.snapshot()
    failure = view.failure
    if failure and failure.kind == "usage" and not view.train_steps and view.loaded is None:
        raise UsageError(failure.message, field=failure.field)  # found before anything ran
    saved = keep(view, args.csv, args.json, folder)
    print(summary_text(typed_summary(view)))
    if failure and view.status != "cancelled":
        stderr_line(f"vramtui: train {view.status}: {failure.kind}: {failure.message}")
    code = exit_code(view, interrupted is not None)
    return EXIT_FAILED if code == EXIT_OK and not saved else code


def run_in_app(resolved: ResolvedRun, spec: TrainSpec, out: str | None) -> int:
    """`--app`: the app opens on the training run's screen (its start form behind it)."""
    from vramtui.commands.app_command import run_app
    from vramtui.commands.out_option import make_out
    from vramtui.tui.app import VramApp
    from vramtui.tui.run_state import train_estimate

    folder = make_out(out) if out else None
    app = VramApp(resolved.spec, out_dir=folder, train=(resolved, spec), predictor=train_estimate)
    return run_app(app)
