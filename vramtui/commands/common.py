"""Flags shared by the subcommands that describe a run, and headless plumbing."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from vramtui.errors import UsageError
from vramtui.spec import ATTENTION, DTYPES, RunSpec

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    return value


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model source (default: random weights from the architecture)"
    )
    group.add_argument(
        "--checkpoint", metavar="PATH_OR_ID", help="load a real checkpoint (safetensors)"
    )
    group.add_argument("--config", metavar="PATH", help="build any causal LM from a config.json")
    group.add_argument(
        "--allow-download", action="store_true", help="let --checkpoint fetch a hub id"
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow .bin (pickle) checkpoints; they can run code when loaded",
    )


def add_spec_arguments(
    parser: argparse.ArgumentParser, *, model_default: str | None = "opt-125m"
) -> None:
    parser.add_argument(
        "--model", "-m", default=model_default, help="catalogue name, e.g. opt-1.3b"
    )
    parser.add_argument(
        "--tokens", "-n", type=positive_int, default=200, help="new tokens, exactly"
    )
    parser.add_argument(
        "--prompt-tokens", type=positive_int, default=8, help="random prompt length"
    )
    parser.add_argument("--prompt", help="prompt text (needs a checkpoint with a tokenizer)")
    parser.add_argument("--batch", "-b", type=positive_int, default=1)
    parser.add_argument("--dtype", choices=DTYPES, help="default: float16 on GPUs, float32 on CPU")
    parser.add_argument(
        "--attn", choices=ATTENTION, default="sdpa", help="attention implementation"
    )
    parser.add_argument("--device", "-d", default="auto", help="cuda:N, mps or cpu (default: best)")
    parser.add_argument("--seed", type=positive_int, default=0)
    parser.add_argument(
        "--cudnn-sdpa",
        action="store_true",
        help="let sdpa use cuDNN attention (slow first pass: a graph per sequence length)",
    )
    add_source_arguments(parser)


def source_of(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.checkpoint and args.config:
        raise UsageError("pass --checkpoint or --config, not both")
    if args.checkpoint:
        return "checkpoint", args.checkpoint
    if args.config:
        return "config", args.config
    return "architecture", None


def model_label(path: str) -> str:
    """A short name for a config or checkpoint path: its file stem or folder name."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        return path
    last = parts[-1]
    if last == "config.json" and len(parts) > 1:
        return parts[-2]
    return last.removesuffix(".json")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    source, path = source_of(args)
    model = args.model or "opt-125m"
    if source != "architecture" and args.model in (None, "opt-125m"):
        model = model_label(str(path))
    return RunSpec(
        model=model,
        source=source,
        path=path,
        tokens=args.tokens,
        prompt_tokens=args.prompt_tokens,
        prompt=args.prompt,
        batch=args.batch,
        dtype=args.dtype,
        attn=args.attn,
        device=args.device,
        seed=args.seed,
        allow_download=args.allow_download,
        allow_pickle=args.allow_pickle,
        cudnn_sdpa=getattr(args, "cudnn_sdpa", False),
    )


class Interrupted(Exception):
    """Ctrl+C, SIGTERM or SIGHUP in a headless command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` in the main thread."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    old = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run_in_thread(
    work: Callable[[], T], on_interrupt: Callable[[], None]
) -> tuple[T | None, Interrupted | None]:
    """Run `work` in a thread; on a signal, call `on_interrupt` and wait for it to end."""
    result: list[T] = []
    error: list[BaseException] = []

    finished = threading.Event()

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)
        finally:
            finished.set()

    thread = threading.Thread(target=target, name="vramtui-run", daemon=True)
    interrupted: Interrupted | None = None
    with interrupts_raise():
        thread.start()
        # An Event, not thread.join(timeout): on Python 3.11 a signal handler that
        # raises inside join() can leave the thread marked finished while it runs.
        while not finished.is_set():
            try:
                finished.wait(0.1)
            except Interrupted as exc:
                interrupted = exc
                on_interrupt()
    if error:
        raise error[0]
    return (result[0] if result else None), interrupted


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr)
