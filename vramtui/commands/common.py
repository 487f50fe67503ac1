"""Flags shared by the subcommands that describe a run, and the one spec builder."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from vramtui.errors import UsageError
from vramtui.models.catalogue import model_names
from vramtui.runspec import ATTENTION, CACHES, DTYPES, ResolvedRun, RunSpec, model_label
from vramtui.runspec.cap import parse_cap
from vramtui.runspec.device_map import DEVICE_MAPS
from vramtui.runspec.quant import CACHE_BITS, QUANTS

DEFAULTS = RunSpec()


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's default at the end of its help, where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "%(default)" not in text and "default:" not in text:
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


positive_int = whole_number  # the value's sign is checked by resolve(), naming its field


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model source (default: random weights from the architecture named by --model)"
    )
    group.add_argument(
        "--checkpoint",
        metavar="PATH_OR_ID",
        help="load a real checkpoint with from_pretrained (safetensors only; a local folder, "
        "or a hub id with --allow-download)",
    )
    group.add_argument(
        "--config", metavar="PATH", help="build any causal LM from a config.json, random weights"
    )
    group.add_argument(
        "--allow-download", action="store_true", help="let --checkpoint fetch a hub id"
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow .bin (pickle) checkpoints; they can run code when loaded",
    )


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The run's shape: tokens, prompt, batch, dtype, attention."""
    parser.add_argument(
        "--tokens", "-n", type=whole_number, default=DEFAULTS.tokens,
        help="new tokens to generate, exactly (EOS is suppressed)",
    )  # fmt: skip
    parser.add_argument(
        "--prompt-tokens", type=whole_number, default=DEFAULTS.prompt_tokens,
        help="length of the random prompt",
    )  # fmt: skip
    parser.add_argument(
        "--batch", "-b", type=whole_number, default=DEFAULTS.batch,
        help="sequences generated at once (the KV cache grows with it)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", choices=DTYPES, help="weights and activations (default: float16 on GPUs, "
        "float32 on the CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--attn", choices=ATTENTION, default=DEFAULTS.attn,
        help="attention implementation (eager keeps the score matrix: quadratic in the prompt)",
    )  # fmt: skip
    parser.add_argument(
        "--cache", choices=CACHES, default=DEFAULTS.cache,
        help="KV cache (transformers' cache_implementation): dynamic grows every step, "
        "static is allocated for every position at the start, offloaded keeps it on the CPU, "
        "quantized stores it in --cache-bits (transformers' QuantizedCache)",
    )  # fmt: skip
    parser.add_argument(
        "--cache-bits", type=int, choices=CACHE_BITS, default=DEFAULTS.cache_bits,
        help="bits of a quantized KV cache (default: 4)",
    )  # fmt: skip
    add_quant_arguments(parser)


def add_quant_arguments(parser: argparse.ArgumentParser) -> None:
    """--quant and --double-quant (see vramtui.runspec.quant)."""
    parser.add_argument(
        "--quant", choices=QUANTS, default=DEFAULTS.quant,
        help="quantized weights: int8 (bitsandbytes LLM.int8), nf4 / fp4 (bitsandbytes "
        "4-bit, compute in --dtype), int8-wo / int4-wo / fp8 (torchao weight-only); "
        'needs pip install -e ".[quant]"',
    )  # fmt: skip
    parser.add_argument(
        "--double-quant", action="store_true",
        help="bitsandbytes 4-bit: quantize the quantization constants too",
    )  # fmt: skip


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """--device-map and --max-memory, handed to from_pretrained as accelerate spells them."""
    parser.add_argument(
        "--device-map", choices=DEVICE_MAPS,
        help="place the model across GPUs (and the CPU) with transformers' device_map",
    )  # fmt: skip
    parser.add_argument(
        "--max-memory", metavar="DEV=SIZE,...",
        help="memory each device may hold for weights, e.g. 0=70GiB,1=80GiB,cpu=200GiB "
        "(GB = 10^9, GiB = 2^30; default: what each device has free)",
    )  # fmt: skip


def add_cap_argument(parser: argparse.ArgumentParser) -> None:
    """--cap SIZE: run as on a smaller GPU (see vramtui.runspec.cap)."""
    parser.add_argument(
        "--cap", metavar="SIZE",
        help="limit torch's CUDA caching allocator to SIZE on the run's GPU, as on a smaller "
        "card: 24GiB, 24GB, 12G, 16000MiB or bytes (the CUDA context is not under the cap)",
    )  # fmt: skip


def say_variant(resolved: ResolvedRun) -> ResolvedRun:
    """A fine-tuned variant's model said as the base it is read as, in one stderr line."""
    if resolved.variant_note:
        print(f"vramtui: {resolved.variant_note}", file=sys.stderr)
    return resolved


def model_help() -> str:
    return "catalogue model, by name or hub id: " + ", ".join(model_names())


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of a RunSpec, as `vramtui run` and the app take them."""
    parser.add_argument("--model", "-m", default=DEFAULTS.model, help=model_help())
    add_shape_arguments(parser)
    parser.add_argument(
        "--prompt", help="a real prompt text instead of random ids (needs a checkpoint "
        "with a tokenizer)",
    )  # fmt: skip
    parser.add_argument(
        "--device", "-d", default=DEFAULTS.device,
        help="cuda:N, mps or cpu; auto is the first GPU, else MPS, else the CPU",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=whole_number, default=DEFAULTS.seed,
        help="seed of the random prompt (the same seed, the same prompt)",
    )  # fmt: skip
    parser.add_argument(
        "--cudnn-sdpa",
        action="store_true",
        help="let sdpa use cuDNN attention (slow first pass: a graph per sequence length)",
    )
    add_cap_argument(parser)
    add_placement_arguments(parser)
    add_source_arguments(parser)


def source_of(args: argparse.Namespace) -> tuple[str, str | None]:
    checkpoint, config = getattr(args, "checkpoint", None), getattr(args, "config", None)
    if checkpoint and config:
        raise UsageError("pass --checkpoint or --config, not both", field="source")
    if checkpoint:
        return "checkpoint", checkpoint
    if config:
        return "config", config
    return "architecture", None


def build_spec(args: argparse.Namespace, **overrides: Any) -> RunSpec:
    """The RunSpec the flags describe: the one builder every command uses.

    Flags a command does not have keep the RunSpec's defaults; `overrides` win.
    """
    source, path = source_of(args)
    model = getattr(args, "model", None) or DEFAULTS.model
    if source != "architecture" and getattr(args, "model", None) in (None, DEFAULTS.model):
        model = model_label(str(path))
    values: dict[str, Any] = {"model": model, "source": source, "path": path}
    for name in (
        "tokens", "prompt_tokens", "prompt", "batch", "dtype", "attn", "device", "seed",
        "allow_download", "allow_pickle", "cudnn_sdpa", "cache", "device_map", "max_memory",
        "quant", "double_quant", "cache_bits",
    ):  # fmt: skip
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    cap = getattr(args, "cap", None)
    if cap is not None:
        values["cap_bytes"] = parse_cap(cap)
    values.update(overrides)
    return RunSpec(**values)
