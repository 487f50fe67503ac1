"""What vramtui's instrumentation costs in decode speed.

For each model, K interleaved pairs of fresh processes:
  plain   a process that builds the model exactly as the engine does
          (`vramtui.engine.model.build`) and calls `model.generate` with nothing
          attached: no logits processor, no forward hook, no memory probe, no NVML;
  engine  `vramtui run` as a library (`Recorder`): the instrumented engine
          process, with the parent's NVML poller beside it; tok/s from its summary.
The order alternates from pair to pair (plain, engine / engine, plain / ...) so a
drift in clocks or temperature does not favour either. Each pair gives a ratio
engine tok/s / plain tok/s; the result is the median ratio per model.

The timed region is the same in both: `time.monotonic()` immediately before
`model.generate(...)` and after it returns (the engine's `Done.generate_s`),
tokens / seconds, greedy, `min_new_tokens = max_new_tokens = N`, the same
random prompt from the same seed, no warm-up in either (both are first calls
in a fresh process). The plain process calls `torch.cuda.synchronize()` after
generate, inside the timed region; greedy `generate` already waits for the
device at every step's stopping check, so this adds microseconds at most.

A third variant, the engine with the TUI attached, goes in `run_app_attached`
and `VARIANTS` (see there).

On a GPU box (writes overhead.json and overhead.md into the folder):
    python benchmarks/overhead.py --out benchmarks/results/overhead
Dry run of the code path on the CPU (numbers mean nothing; do not commit them):
    python benchmarks/overhead.py --device cpu --config tests/fixtures/tiny-opt.json \\
        --tokens 20 --pairs 2 --out /tmp/overhead
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vramtui import __version__, nvml
from vramtui.bench import parse_names
from vramtui.commands.common import model_label
from vramtui.errors import UsageError
from vramtui.export import atomic_write, check_writable
from vramtui.recorder import Recorder
from vramtui.spec import RunSpec, validate


@dataclass
class Measurement:
    """One timed generate in one fresh process."""

    variant: str
    tokens: int
    generate_s: float
    tokens_per_s: float
    pid: int | None
    environment: dict[str, Any] = field(default_factory=dict)


# ---- variant: plain transformers ---------------------------------------------------------


def plain_child(spec_json: str) -> None:
    """In the fresh process: build as the engine does, time generate, print one JSON line."""
    import platform

    import torch
    import transformers

    from vramtui.engine.child import resolve_device
    from vramtui.engine.model import build
    from vramtui.spec import resolve_dtype

    spec = RunSpec.from_dict(json.loads(spec_json))
    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = build(spec, device, resolve_dtype(spec.dtype, device.type)).model
    config = model.config
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    vocab = int(getattr(config, "vocab_size", 50272))
    ids = torch.randint(4, vocab, (spec.batch, spec.prompt_tokens), generator=generator)
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else eos if eos is not None else 0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    t_gen = time.monotonic()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=spec.tokens,
            min_new_tokens=spec.tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=pad,
        )
    sync()
    generate_s = time.monotonic() - t_gen

    tokens = int(out.shape[1] - ids.shape[1])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine() or "CPU"
    )
    print(json.dumps({
        "tokens": tokens,
        "generate_s": generate_s,
        "pid": os.getpid(),
        "environment": {
            "device": str(device),
            "device_name": name,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda_runtime": str(torch.version.cuda or ""),
            "python": sys.version.split()[0],
        },
    }))


def run_plain(spec: RunSpec) -> Measurement:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--plain-child", json.dumps(spec.to_dict())],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"plain run of {spec.model} failed ({proc.returncode}): {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds = data["generate_s"]
    return Measurement("plain", data["tokens"], seconds, data["tokens"] / seconds, data["pid"],
                       data["environment"])


# ---- variant: the instrumented engine (`vramtui run`) ------------------------------------


def run_engine(spec: RunSpec) -> Measurement:
    summary = Recorder(spec).run().summary()
    if summary["status"] != "completed":
        failure = summary["failure"] or {}
        raise RuntimeError(f"vramtui run of {spec.model} {summary['status']}: "
                           f"{failure.get('kind')}: {failure.get('message')}")
    timings = summary["timings"]
    env = summary["environment"]
    return Measurement("engine", timings["tokens"], timings["generate_s"],
                       timings["tokens_per_s"], env.get("engine_pid"), env)


# ---- variant: the engine with the app attached (to be written) ---------------------------


def run_app_attached(spec: RunSpec) -> Measurement:
    """The engine while the TUI shows it live: the figure users will see.

    For the TUI engineer: start the app headless on `spec` (e.g. `App.run_test`
    with the run started as the app starts it), let it redraw at its normal
    rate until the run ends, and return the engine's `Done` timings exactly as
    `run_engine` does (variant name "app"). Then add it to VARIANTS below; the
    pairing, ratios and reports pick it up as "app / plain".
    """
    raise NotImplementedError("the app-attached variant is not written yet")


# Every variant is compared with "plain", which must come first.
VARIANTS: dict[str, Callable[[RunSpec], Measurement]] = {
    "plain": run_plain,
    "engine": run_engine,
    # "app": run_app_attached,
}


# ---- the experiment ----------------------------------------------------------------------


def measure(spec: RunSpec, variants: list[str], pairs: int, log: Callable[[str], None]
            ) -> dict[str, list[Measurement]]:
    out: dict[str, list[Measurement]] = {v: [] for v in variants}
    for k in range(pairs):
        order = variants if k % 2 == 0 else variants[::-1]
        for variant in order:
            m = VARIANTS[variant](RunSpec.from_dict(spec.to_dict()))
            if m.tokens != spec.tokens:
                raise RuntimeError(f"{variant} generated {m.tokens} tokens, not {spec.tokens}")
            out[variant].append(m)
        rates = ", ".join(f"{v} {out[v][-1].tokens_per_s:.1f}" for v in variants)
        log(f"{spec.model} pair {k + 1}/{pairs}: {rates} tok/s")
    return out


def model_result(runs: dict[str, list[Measurement]]) -> dict[str, Any]:
    plain = [m.tokens_per_s for m in runs["plain"]]
    result: dict[str, Any] = {
        "tokens_per_s": {v: [m.tokens_per_s for m in ms] for v, ms in runs.items()},
        "generate_s": {v: [m.generate_s for m in ms] for v, ms in runs.items()},
        "median_tokens_per_s": {v: statistics.median(m.tokens_per_s for m in ms)
                                for v, ms in runs.items()},
        "pids": {v: [m.pid for m in ms] for v, ms in runs.items()},
        "ratios": {},
        "median_ratio": {},
    }
    for variant, ms in runs.items():
        if variant == "plain":
            continue
        ratios = [m.tokens_per_s / p for m, p in zip(ms, plain, strict=True)]
        result["ratios"][variant] = ratios
        result["median_ratio"][variant] = statistics.median(ratios)
    return result


def environment(runs: dict[str, dict[str, list[Measurement]]]) -> dict[str, Any]:
    first = next(iter(runs.values()))
    env = dict(first["plain"][0].environment)
    env["driver"] = nvml.driver_version()
    env["vramtui"] = __version__
    engine = first.get("engine")
    if engine:
        seen = engine[0].environment
        env["engine_device_name"] = seen.get("gpu_name") or seen.get("device_name")
    return env


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    variants = [v for v in report["variants"] if v != "plain"]
    versions = " · ".join(
        f"{label} {env[key]}"
        for key, label in (("driver", "driver"), ("cuda_runtime", "CUDA"), ("torch", "torch"),
                           ("transformers", "transformers"), ("vramtui", "vramtui"))
        if env.get(key)
    )
    s = report["settings"]
    lines = [
        f"**{env.get('device_name')}** · {versions}",
        "",
        f"`{report['command']}`",
        "",
        f"{s['tokens']} new tokens, prompt of {s['prompt_tokens']} tokens, greedy, batch "
        f"{s['batch']}, {s['dtype'] or 'default dtype'}, {s['pairs']} interleaved pairs of "
        "fresh processes; tok/s = tokens / seconds around `model.generate` alone.",
        "",
        "| model | plain tok/s | " + " | ".join(f"{v} tok/s | {v} / plain" for v in variants)
        + " |",
        "| --- | ---: | " + " | ".join("---: | ---:" for _ in variants) + " |",
    ]
    for model, r in report["models"].items():
        cells = [model, f"{r['median_tokens_per_s']['plain']:.1f}"]
        for v in variants:
            ratios = r["ratios"][v]
            cells.append(f"{r['median_tokens_per_s'][v]:.1f}")
            cells.append(f"{r['median_ratio'][v]:.3f} ({min(ratios):.3f}–{max(ratios):.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Medians over the pairs; the ratio column: median (min–max) of the per-pair "
              "ratios."]
    return "\n".join(lines) + "\n"


def build_specs(args: argparse.Namespace) -> list[RunSpec]:
    models = parse_names("--models", args.models) if args.models else []
    configs = parse_names("--config", args.config) if args.config else []
    refs = [(name, "architecture", None) for name in models]
    refs += [(model_label(p), "config", p) for p in configs]
    specs = []
    for name, source, path in refs:
        spec = RunSpec(model=name, source=source, path=path, tokens=args.tokens,
                       prompt_tokens=args.prompt_tokens, batch=args.batch, dtype=args.dtype,
                       device=args.device, seed=0)
        validate(spec)
        specs.append(spec)
    return specs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="opt-125m,opt-1.3b", help="catalogue names")
    parser.add_argument("--config", help="config.json paths instead of (or besides) --models")
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs per model")
    parser.add_argument("--variants", default="plain,engine",
                        help=f"comma-separated, plain first; known: {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--force", action="store_true", help="overwrite earlier results there")
    args = parser.parse_args(argv)
    if args.config and args.models == parser.get_default("models"):
        args.models = None
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--plain-child":
        plain_child(sys.argv[2])
        return 0
    args = parse_args(argv)
    try:
        variants = parse_names("--variants", args.variants)
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or variants[0] != "plain":
            raise UsageError(f"--variants: plain first, then any of {', '.join(VARIANTS)}")
        specs = build_specs(args)
        args.out.mkdir(parents=True, exist_ok=True)
        paths = [check_writable(args.out / name, force=args.force)
                 for name in ("overhead.json", "overhead.md")]
    except UsageError as exc:
        print(f"overhead: {exc}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    runs = {spec.model: measure(spec, variants, args.pairs, log) for spec in specs}
    report = {
        "command": shlex.join(["python", "benchmarks/overhead.py", *(argv or sys.argv[1:])]),
        "settings": {"tokens": args.tokens, "prompt_tokens": args.prompt_tokens,
                     "batch": args.batch, "dtype": args.dtype, "device": args.device,
                     "pairs": args.pairs},
        "variants": variants,
        "environment": environment(runs),
        "models": {model: model_result(r) for model, r in runs.items()},
        "measurements": {model: {v: [asdict(m) for m in ms] for v, ms in r.items()}
                         for model, r in runs.items()},
    }
    atomic_write(paths[0], json.dumps(report, indent=2) + "\n")
    atomic_write(paths[1], markdown(report))
    for model, r in report["models"].items():
        for variant, ratio in r["median_ratio"].items():
            print(f"{model}: {variant} / plain tok/s = {ratio:.3f} (median of {args.pairs})")
    log(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
