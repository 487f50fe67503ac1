"""`vramtui estimate`: predicted memory of a run, without running it (no GPU needed)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from typing import Any

from vramtui import nvml
from vramtui.catalogue import ModelInfo, lookup
from vramtui.commands.common import model_label, positive_int
from vramtui.errors import EXIT_OK, UsageError
from vramtui.estimator import (
    ALLOC_CONF,
    Estimate,
    estimate,
    expandable_segments,
    fragmentation_warning,
    max_tokens_that_fit,
    model_info_for_config,
)
from vramtui.report import table
from vramtui.spec import ATTENTION, DTYPES, RunSpec, validate
from vramtui.units import format_bytes, format_count, parse_size


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "estimate", help="predict a run's memory, term by term, and how many tokens fit"
    )
    parser.add_argument("--model", "-m", help="catalogue name, e.g. opt-1.3b or facebook/opt-1.3b")
    parser.add_argument("--config", metavar="PATH", help="estimate an OPT config.json instead")
    parser.add_argument("--tokens", "-n", type=positive_int, default=200, help="new tokens")
    parser.add_argument("--prompt-tokens", type=positive_int, default=8, help="prompt length")
    parser.add_argument("--batch", "-b", type=positive_int, default=1)
    parser.add_argument("--dtype", choices=DTYPES, default="float16")
    parser.add_argument(
        "--attn", choices=ATTENTION, default="sdpa", help="attention implementation"
    )
    parser.add_argument(
        "--gpu-memory",
        metavar="SIZE",
        help="device memory for 'max tokens that fit', e.g. 80GB (default: the first GPU's total)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(command=run)


def _model(args: argparse.Namespace) -> tuple[ModelInfo, RunSpec]:
    if args.config and args.model:
        raise UsageError("pass --model or --config, not both")
    if not args.config and not args.model:
        raise UsageError("pass --model (e.g. opt-1.3b) or --config PATH")
    spec = RunSpec(
        model=args.model or model_label(args.config),
        source="config" if args.config else "architecture",
        path=args.config,
        tokens=args.tokens,
        prompt_tokens=args.prompt_tokens,
        batch=args.batch,
        dtype=args.dtype,
        attn=args.attn,
    )
    config = validate(spec)  # unknown model, budgets beyond the positions, bad numbers
    if config is None:
        return lookup(spec.model), spec
    info = model_info_for_config(config)
    if info is None:
        raise UsageError(
            f"cannot estimate {args.config}: only OPT configs (model_type 'opt', with biases, "
            "LayerNorm weights and a tied lm_head) are modelled"
        )
    return replace(info, name=spec.model), spec


def _memory(text: str | None) -> tuple[int | None, str | None]:
    """(bytes, where from) for 'max tokens that fit'; (None, None) without a GPU."""
    if text is not None:
        return parse_size(text), "--gpu-memory"
    gpus = nvml.gpus()
    if not gpus:
        return None, None
    return gpus[0].total, f"GPU 0 ({gpus[0].name})"


def _rows(e: Estimate) -> list[tuple[str, str, str]]:
    kv_token = e.model.kv_bytes_per_token(e.dtype, e.batch)
    positions = e.prompt_tokens + e.tokens - 1
    up_to = " (at most the GPU's free memory)" if e.cache_balloons else ""
    return [
        ("weights", format_bytes(e.weights_bytes, 2), f"{format_count(e.model.params)} params"),
        (
            "KV cache (end)",
            format_bytes(e.kv_cache_bytes, 2),
            f"{format_bytes(kv_token)}/token x {positions} positions",
        ),
        (
            "transient (largest step)",
            format_bytes(e.transient_bytes, 2),
            "prefill activations, logits, cache copy",
        ),
        ("allocator slack", format_bytes(e.slack_bytes, 2), "reserved - allocated"),
        (
            "CUDA context & libraries",
            format_bytes(e.context_bytes, 2),
            "not from the allocator" if e.backend == "cuda" else "none off CUDA",
        ),
        ("peak allocated", format_bytes(e.peak_allocated_bytes, 2), "torch max_memory_allocated"),
        (
            "peak reserved",
            format_bytes(e.peak_reserved_bytes, 2),
            "torch max_memory_reserved" + up_to,
        ),
        ("peak total", format_bytes(e.peak_total_bytes, 2), "NVML per-process" + up_to),
    ] + (
        [("needed to fit", format_bytes(e.required_bytes, 2), "the cached KV segments freed")]
        if e.cache_balloons
        else []
    )


def run(args: argparse.Namespace) -> int:
    info, spec = _model(args)
    memory, memory_source = _memory(args.gpu_memory)
    shape: dict[str, Any] = dict(
        prompt_tokens=spec.prompt_tokens,
        batch=spec.batch,
        dtype=args.dtype,
        attn=spec.attn,
        expandable_segments=expandable_segments(os.environ.get(ALLOC_CONF)),
    )
    e = estimate(info, tokens=spec.tokens, **shape)
    fit = max_tokens_that_fit(info, memory, **shape) if memory is not None else None
    note = None if memory is not None else "no GPU detected; pass --gpu-memory SIZE"
    warning = fragmentation_warning(e)
    if args.json:
        data = e.to_dict()
        data.update(
            max_tokens_that_fit=fit,
            gpu_memory_bytes=memory,
            gpu_memory_source=memory_source,
            kv_bytes_per_token=info.kv_bytes_per_token(args.dtype, spec.batch),
            cache_balloons=e.cache_balloons,
            warning=warning,
        )
        if note:
            data["note"] = note
        print(json.dumps(data, indent=2))
        return EXIT_OK
    head = (
        f"Estimate — {info.name}, {spec.prompt_tokens} prompt + {spec.tokens} new tokens, "
        f"batch {spec.batch}, {args.dtype}, {spec.attn}"
    )
    print(head)
    print()
    print(table(_rows(e), ("component", "bytes", "what")))
    print()
    if fit is not None:
        print(f"max new tokens that fit in {format_bytes(memory, 2)} ({memory_source}): {fit}")
    else:
        print(f"max new tokens that fit: – ({note})")
    if warning:
        print(f"warning: {warning}")
    print(f"calibration: {e.calibration.source}")
    return EXIT_OK
