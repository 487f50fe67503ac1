"""`vramtui estimate --workload full|lora|qlora`: a fine-tuning step's memory, predicted
term by term, and the largest micro-batch and sequence that fit the device."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from vramtui.commands.common import whole_number
from vramtui.errors import EXIT_OK, UsageError
from vramtui.predict.training.config_steps import config_train_trace
from vramtui.predict.training.fit import Room, largest, largest_that_fits
from vramtui.predict.training.replay import (
    TrainingEstimate,
    estimate_train_run,
    estimate_training,
)
from vramtui.predict.training.trace import TrainShape, train_trace
from vramtui.report.tables import table
from vramtui.runspec import ResolvedRun
from vramtui.runspec.quant import installed
from vramtui.runspec.train_spec import (
    LORA_ALPHA,
    LORA_R,
    LORA_TARGETS,
    METHODS,
    OPTIMIZERS,
    TrainSpec,
    check_train_fields,
)
from vramtui.units import format_bytes

WORKLOADS = ("generate", *METHODS)
MAX_BATCH = 4096
MAX_SEQ = 1 << 20


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The fine-tuning recipe's flags (TrainSpec), as `estimate` takes them."""
    group = parser.add_argument_group("fine-tuning (--workload full, lora or qlora)")
    group.add_argument(
        "--workload", choices=WORKLOADS, default="generate",
        help="generate text (default), or one training step: full (every parameter), "
        "lora (adapters on a frozen base), qlora (adapters on a 4-bit nf4 base)",
    )  # fmt: skip
    group.add_argument("--seq", type=whole_number,
                       help=f"tokens per training sequence, default {TrainSpec.seq} "
                       "(micro-batch: --batch)")  # fmt: skip
    group.add_argument("--grad-checkpointing", action="store_true",
                       help="transformers' activation checkpointing")  # fmt: skip
    group.add_argument("--grad-accum", type=whole_number,
                       help="micro-batches per optimizer step")  # fmt: skip
    group.add_argument("--optim", choices=OPTIMIZERS,
                       help="adamw (torch), adamw-8bit / paged-adamw-8bit (bitsandbytes), "
                       "sgd (torch), adafactor (transformers)")  # fmt: skip
    group.add_argument("--lora-r", type=whole_number, help=f"default {LORA_R}")
    group.add_argument("--lora-alpha", type=whole_number, help=f"default {LORA_ALPHA}")
    group.add_argument("--trace", action="store_true",
                       help="trace the step on the meta device (a child process, seconds to "
                       "minutes) where no trace is cached, instead of estimating it from the "
                       "config's numbers (basis: approximate)")  # fmt: skip
    group.add_argument(
        "--lora-targets", help=f"{LORA_TARGETS} (default), or module names: q_proj,v_proj"
    )


TRAIN_FLAGS = ("seq", "grad_checkpointing", "grad_accum", "optim", "lora_r", "lora_alpha",
               "lora_targets", "trace")  # fmt: skip


def check_workload(args: argparse.Namespace) -> None:
    """A training flag on a generation estimate is refused, not ignored."""
    if args.workload != "generate":
        return
    given = [name for name in TRAIN_FLAGS if getattr(args, name) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(f"{flag} applies to --workload full, lora or qlora", field="workload")


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def train_spec(args: argparse.Namespace, resolved: ResolvedRun) -> TrainSpec:
    """The recipe the flags describe, checked (one line and exit 2 where it cannot be)."""
    base = resolved.spec
    if args.dtype is None:  # training's default: bfloat16 on GPUs
        base = replace(base, dtype="bfloat16" if resolved.backend == "cuda" else "float32")
    spec = TrainSpec(
        base=base, method=args.workload, seq=_given(args.seq, TrainSpec.seq),
        grad_accum=_given(args.grad_accum, TrainSpec.grad_accum),
        optim=_given(args.optim, TrainSpec.optim), grad_checkpointing=args.grad_checkpointing,
        lora_r=_given(args.lora_r, LORA_R), lora_alpha=_given(args.lora_alpha, LORA_ALPHA),
        lora_targets=_given(args.lora_targets, LORA_TARGETS),
    )  # fmt: skip
    check_train_fields(spec)
    if spec.adapters and not installed("peft"):
        raise UsageError(f'--workload {spec.method} needs peft: pip install -e ".[train]"')
    if resolved.positions is not None and spec.seq > resolved.positions:
        raise UsageError(
            f"--seq {spec.seq} is longer than the model's {resolved.positions} positions",
            field="seq",
        )
    return spec


def _room(resolved: ResolvedRun) -> Room | None:
    if resolved.spec.cap_bytes is not None:
        return Room(resolved.spec.cap_bytes, capped=True)
    choice = resolved.device_choice
    if resolved.backend != "cuda" or choice is None or choice.total is None:
        return None
    return Room(choice.total)


def _fits(resolved: ResolvedRun, shape: TrainShape, room: Room, basis: str) -> tuple[int, int]:
    """(largest micro-batch at this sequence, longest sequence at this micro-batch): a
    traced estimate searched over traces interpolated from a few sizes and checked with
    traces (fit.py); an approximate one over its own figure at each size (written at
    once from the config's numbers)."""
    config = dict(resolved.config or {})
    name = resolved.spec.model

    def search(field: str, at: int, limit: int) -> int:
        def shaped(n: int) -> TrainShape:
            return replace(shape, **{field: n})  # type: ignore[arg-type]

        if basis == "approximate":

            def fits(n: int) -> bool:
                written = config_train_trace(config, shaped(n))
                assert written is not None  # the estimate itself was written
                return room.fits(estimate_training(written, shaped(n)))

            return largest(fits, at, limit)
        return largest_that_fits(
            lambda n: train_trace(name, config, shaped(n)),
            lambda traced, n: estimate_training(traced, shaped(n)),
            room, at, limit,
        )  # fmt: skip

    batch = search("batch", shape.batch, MAX_BATCH)
    seq = search("seq", shape.seq, resolved.positions or MAX_SEQ)
    return batch, seq


def run_train(args: argparse.Namespace, resolved: ResolvedRun, memory_source: str | None) -> int:
    spec = train_spec(args, resolved)
    est = estimate_train_run(resolved, spec, approximate=not args.trace)
    shape = TrainShape.of(spec, resolved.backend)
    room = _room(resolved)
    fits = _fits(resolved, shape, room, est.basis) if room is not None else None
    where = "--cap" if room is not None and room.capped else memory_source
    if args.json:
        print(json.dumps(_json(est, room, where, fits), indent=2))
        return EXIT_OK
    _print(spec, est, room, where, fits)
    return EXIT_OK


def _json(
    est: TrainingEstimate, room: Room | None, where: str | None, fits: tuple[int, int] | None
) -> dict[str, Any]:
    data = est.to_dict()
    data.update(
        gpu_memory_bytes=room.bytes if room else None,
        gpu_memory_source=where if room else None,
        compared="peak_reserved_bytes" if room and room.capped else "peak_total_bytes",
        largest_batch_that_fits=fits[0] if fits else None,
        largest_seq_that_fits=fits[1] if fits else None,
    )
    if est.basis == "approximate":
        data["basis_note"] = "written from the config's numbers; --trace traces the step"
    if room is None:
        data["note"] = "no GPU detected; pass --gpu-memory SIZE"
    return data


def basis_line(est: TrainingEstimate) -> str:
    """How the step was read: traced, or written from the config's numbers."""
    if est.basis == "approximate":
        return (
            "basis: approximate — written from the config's numbers, no trace cached "
            "(--trace: trace the step on the meta device)"
        )
    return "basis: traced — the model's code, two steps traced on the meta device"


def _rows(est: TrainingEstimate) -> list[tuple[str, str, str]]:
    b = format_bytes
    rows = [
        ("frozen weights", b(est.frozen_weights_bytes), "not trained (and buffers)"),
        ("trainable weights", b(est.trainable_weights_bytes), "the optimizer updates these"),
        ("gradients", b(est.gradients_bytes), "one per trainable weight, its dtype"),
        ("optimizer states", b(est.optimizer_states_bytes), est.optim),
    ]
    if est.paged_states_bytes:
        rows.append(("paged states", b(est.paged_states_bytes), "unified memory: NVML only"))
    rows += [
        ("activations", b(est.activations_bytes), "alive at the forward's end"),
        ("peak allocated", b(est.peak_allocated_bytes), f"step {est.peak_step}, "
         f"{est.peak_phase}"),
        ("allocator slack", b(est.slack_bytes), "reserved - allocated"),
        ("CUDA context", b(est.context_bytes), "outside the allocator"),
        ("peak total", b(est.peak_total_bytes), "the process's GPU memory (NVML)"),
    ]  # fmt: skip
    return rows


def _print(
    spec: TrainSpec,
    est: TrainingEstimate,
    room: Room | None,
    where: str | None,
    fits: tuple[int, int] | None,
) -> None:
    checkpointing = ", checkpointing" if est.grad_checkpointing else ""
    print(
        f"Training estimate — {spec.base.model}, {est.method}, micro-batch {est.batch} x "
        f"{est.seq} tokens, {est.dtype}, {est.optim}{checkpointing}, {est.backend}"
    )
    print(basis_line(est))
    print()
    print(table(_rows(est), ("component", "bytes", "what")))
    print()
    if room is None or fits is None:
        print("largest micro-batch that fits: – (no GPU detected; pass --gpu-memory SIZE)")
        return
    memory = f"{format_bytes(room.bytes, 2)} ({where})"
    print(f"largest micro-batch that fits {memory}: {fits[0]} at {est.seq} tokens")
    print(f"longest sequence that fits {memory}: {fits[1]} tokens at micro-batch {est.batch}")
