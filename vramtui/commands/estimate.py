"""`vramtui estimate`: predicted memory of a run, without running it (no GPU needed)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from vramtui.commands.common import (
    add_cap_argument,
    add_placement_arguments,
    add_shape_arguments,
    build_spec,
    model_help,
    say_variant,
    whole_number,
)
from vramtui.commands.estimate_placed import max_memory_of, placed_devices, print_placed
from vramtui.commands.estimate_train import add_train_arguments, check_workload, run_train
from vramtui.errors import EXIT_OK, UsageError
from vramtui.measure import device_inventory, nvml
from vramtui.predict.cpu_process import CPU_CALIBRATION, cpu_process
from vramtui.predict.estimator import (
    Architecture,
    Estimate,
    architecture_of,
    estimate_run,
)
from vramtui.predict.fit_forecast import FitCheck, cap_check, fit_check, max_tokens_that_fit
from vramtui.predict.placed import estimate_placed
from vramtui.report.estimate_text import (
    cap_fit_text,
    compiled_step_note,
    estimate_rows,
    fit_text,
    fragmentation_warning,
    quant_text,
    tokens_fit_text,
)
from vramtui.report.tables import table
from vramtui.runspec import DeviceChoice, DeviceList, ResolvedRun, RunSpec, resolve
from vramtui.runspec.quant import check_quant, check_quant_device, installed, method
from vramtui.units import format_bytes, parse_size


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="predict a run's memory, term by term, and how many tokens fit",
        description="Predict a run's memory without running it: no GPU needed.",
    )
    parser.add_argument("--model", "-m", help=model_help())
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="estimate any causal LM's config.json instead (traced on the meta device)",
    )
    add_shape_arguments(parser)
    parser.add_argument(
        "--device",
        "-d",
        default="cuda",
        help="what the prediction is for: cuda (a GPU: its context and caching allocator), "
        "or cpu (checked against the RAM available here)",
    )
    parser.add_argument(
        "--gpu-memory",
        metavar="SIZE",
        help="the GPU's memory for 'max tokens that fit', with a unit: 80GB, 79.6GiB "
        "(default: the first GPU's total, where NVML sees one)",
    )
    add_cap_argument(parser)
    add_placement_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_train_arguments(parser)
    parser.add_argument(
        "--tp",
        type=whole_number,
        default=None,
        metavar="N",
        help="tensor parallel: each of N ranks' weights (by the model's tp_plan) and KV cache",
    )
    parser.set_defaults(command=run)


def _devices(args: argparse.Namespace) -> tuple[DeviceList, str | None]:
    """The devices the estimate is for (taken as given: a laptop may ask about a GPU it
    does not have), and where the GPU's memory figure comes from."""
    cpu = device_inventory.cpu_choice()
    if args.max_memory is not None and args.device_map is not None:
        return placed_devices(args.max_memory, cpu), "--max-memory"
    if args.gpu_memory is not None:
        size = parse_size(args.gpu_memory, field="gpu_memory", need_unit=True)
        gpu = DeviceChoice("cuda:0", "--gpu-memory", size, size)
        return DeviceList((gpu, cpu), gpus_counted=False), "--gpu-memory"
    found = nvml.gpus()
    if found:
        g = found[0]
        gpu = DeviceChoice("cuda:0", g.name, g.total, g.total)
        return DeviceList((gpu, cpu), gpus_counted=False), f"GPU 0 ({g.name})"
    return DeviceList((cpu,), gpus_counted=False), None


def _resolve(args: argparse.Namespace, found: DeviceList) -> ResolvedRun:
    if args.config and args.model:
        raise UsageError("pass --model or --config, not both", field="model")
    if not args.config and not args.model:
        raise UsageError("pass --model (e.g. opt-1.3b) or --config PATH", field="model")
    device = "cuda:0" if args.device.strip().lower() == "cuda" else args.device
    if args.device_map is not None:
        device = "auto"  # the map says where each module goes (--device's default is cuda)
    spec = build_spec(args, device=device)
    if spec.device_map is not None and (spec.quant != "none" or spec.cache == "quantized"):
        raise UsageError(
            "the estimator does not place a quantized model on several devices yet; "
            "drop --device-map to estimate it on one",
            field="device_map",
        )
    return say_variant(resolve_for_planning(spec, found))


def resolve_for_planning(
    spec: RunSpec, found: DeviceList, environ: Mapping[str, str] | None = None
) -> ResolvedRun:
    """`resolve`, with the quantization checked for planning (no library needed)."""
    _check_quant_for_planning(spec)
    # resolve checks everything else (the quantization is put back once it has)
    bare = dataclasses.replace(spec, quant="none", double_quant=False)
    run = resolve(bare, found, environ=environ)
    check_quant_device(spec.quant, run.backend)
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, quant=spec.quant,
                               double_quant=spec.double_quant))  # fmt: skip


def _check_quant_for_planning(spec: RunSpec) -> None:
    """An estimate needs only the storage rules (arithmetic), not the quantization
    libraries: a laptop without them plans a quantized run. Where the library is
    installed the usual check runs; where not, the method's name and --double-quant."""
    chosen = method(spec.quant)
    if not chosen.package or installed(chosen.package):
        check_quant(spec.quant, spec.double_quant)
    elif spec.double_quant and chosen.name not in ("nf4", "fp4"):
        raise UsageError(
            f"--double-quant applies to bitsandbytes 4-bit (nf4, fp4), not --quant {spec.quant}",
            field="quant",
        )


def _fit(
    resolved: ResolvedRun, est: Estimate, model: Architecture
) -> tuple[int | None, FitCheck | None]:
    """(max new tokens that fit, the fit check), against the device's memory."""
    choice = resolved.device_choice
    if choice is None or choice.total is None:
        return None, None
    if resolved.backend == "cpu":
        free = choice.free or choice.total
        overhead = cpu_process().bytes
        check = fit_check(est, free, overhead_bytes=overhead)
        room = max(free - overhead, 0)
        return max_tokens_that_fit(model, room, **est.run_kwargs()), check
    return max_tokens_that_fit(model, choice.total, **est.run_kwargs()), None


def run(args: argparse.Namespace) -> int:
    check_workload(args)
    found, memory_source = _devices(args)
    if args.workload != "generate":  # a training step: no generation to check
        args.tokens, args.prompt_tokens = 1, 1
    resolved = _resolve(args, found)
    if args.workload != "generate":
        return run_train(args, resolved, memory_source)
    spec = resolved.spec
    model = architecture_of(resolved)  # a TraceError (exit 2) says why not
    if model is None:
        raise UsageError(
            f"cannot estimate {spec.path}: {resolved.model_note}; pass its config.json",
            field="path",
        )
    if args.tp is not None:
        from vramtui.commands.estimate_tp import print_tp

        return print_tp(resolved, model, args.tp, args.json)
    est = estimate_run(resolved)
    assert est is not None
    if spec.device_map is not None:
        placed = estimate_placed(est, dict(resolved.config or {}), spec.device_map,
                                 max_memory_of(resolved, found))  # fmt: skip
        print_placed(est, placed, args.json)
        return EXIT_OK
    most, check = _fit(resolved, est, model)
    if resolved.backend == "cpu":
        memory_source = "available RAM"
    memory = resolved.device_choice.total if resolved.device_choice else None
    if resolved.backend == "cpu" and resolved.device_choice:
        memory = resolved.device_choice.free
    positions_bound = most is not None and most == model.positions - spec.prompt_tokens
    capped = cap_check(est, spec.cap_bytes) if spec.cap_bytes is not None else None
    if args.json:
        data = _json(est, model, most, memory, memory_source, check)
        print(json.dumps({**data, **_cap_json(capped)}, indent=2))
        return EXIT_OK
    print(
        f"Estimate — {model.name}, {spec.prompt_tokens} prompt + {spec.tokens} new tokens, "
        f"batch {spec.batch}, {resolved.dtype}, {spec.attn}, {resolved.backend}"
    )
    print(quant_text(est))
    print()
    print(table(estimate_rows(est), ("component", "bytes", "what")))
    print()
    if check is not None:
        print(fit_text(check, "of RAM available") + " (the peak RSS)")
    if capped is not None:
        print(cap_fit_text(capped, est.context_bytes))
    if most is not None and memory is not None:
        where = f"{format_bytes(memory, 2)} ({memory_source})"
        print(tokens_fit_text(most, where, positions_bound, model.positions))
    else:
        print("max new tokens that fit: – (no GPU detected; pass --gpu-memory SIZE)")
    warning, note = fragmentation_warning(est), compiled_step_note(est)
    if warning:
        print(f"warning: {warning}")
    if note:
        print(f"note: {note}")
    if resolved.backend == "cpu":
        print(f"calibration: the Python process on the CPU, {CPU_CALIBRATION}")
    else:
        print(f"calibration: {est.calibration.source.removeprefix('calibrated: ')}")
    return EXIT_OK


def _json(
    est: Estimate,
    model: Architecture,
    most: int | None,
    memory: int | None,
    memory_source: str | None,
    check: FitCheck | None,
) -> dict[str, Any]:
    data = est.to_dict()
    data.update(
        max_tokens_that_fit=most,
        max_tokens_limited_by=(
            None
            if most is None
            else "positions"
            if most == model.positions - est.prompt_tokens
            else "memory"
        ),
        gpu_memory_bytes=memory if est.backend == "cuda" else None,
        gpu_memory_source=memory_source if est.backend == "cuda" else None,
        kv_bytes_per_token=model.kv_bytes_per_token(est.dtype, est.batch),
        quantization=quant_text(est),
        peak_total_bytes_per_param=est.peak_total_bytes / model.params if model.params else None,
        cache_balloons=est.cache_balloons,
        warning=fragmentation_warning(est),
        note_compiled_step=compiled_step_note(est),
    )
    if est.backend == "cpu":
        data.update(
            ram_available_bytes=memory,
            cpu_process_bytes=cpu_process().bytes,
            cpu_process_source=cpu_process().source,
            fits=check.fits if check else None,
        )
    if memory is None:
        data["note"] = "no GPU detected; pass --gpu-memory SIZE"
    return data


def _cap_json(capped: FitCheck | None) -> dict[str, Any]:
    """--cap: the peak reserved held against it (the CUDA context is outside the cap)."""
    if capped is None:
        return {}
    return {
        "cap_bytes": capped.free_bytes,
        "cap_compared": "peak_reserved_bytes (less a ballooning cache; no CUDA context)",
        "cap_need_bytes": capped.need_bytes,
        "fits_under_cap": capped.fits,
        "max_tokens_under_cap": capped.most_tokens,
    }
