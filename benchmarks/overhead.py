"""What vramtui's instrumentation, and the app on top of it, cost in decode speed.

For each model, K interleaved rounds of fresh processes, one per variant:
  plain   a process that builds the model exactly as the engine does
          (`vramtui.measure.engine.model.build`) and calls `model.generate` with nothing
          attached: no logits processor, no forward hook, no memory probe, no NVML;
  engine  `vramtui run` as a library (`Recorder`): the instrumented engine
          process, with the parent's NVML poller beside it; tok/s from its summary;
  app     the real app (`vramtui --model ... --tokens N --start`), headless: a
          fresh Python process runs `VramApp(spec, start=True)` under Textual's
          `run_test(size=(120, 40))`, so the start screen starts the run, the run
          screen redraws on its own timer (4 Hz) and the summary screen follows,
          as in a terminal except that no frame is written to one; the engine
          and the NVML poller are the ones "engine" uses; tok/s is the engine's
          `Done` figure, exactly as for "engine".
The order alternates from round to round (a, b, c / c, b, a / ...) so a drift
in clocks or temperature favours none. Ratios per round, for the variants
measured: engine / plain (the instrumentation), app / engine (the app itself,
"with the app attached" against headless `vramtui run`) and app / plain;
the result is the median ratio per model.

The timed region is the same in all: `time.monotonic()` immediately before
`model.generate(...)` and after it returns (the engine's `Done.generate_s`),
tokens / seconds, greedy, `min_new_tokens = max_new_tokens = N`, the same
random prompt from the same seed, no warm-up in any (each is the first call
in a fresh process). The plain process calls `torch.cuda.synchronize()` after
generate, inside the timed region; greedy `generate` already waits for the
device at every step's stopping check, so this adds microseconds at most.

On a GPU box (writes overhead.json and overhead.md into the folder):
    python benchmarks/overhead.py --variants plain,engine,app --out benchmarks/results/overhead
The app's cost alone (app / engine):
    python benchmarks/overhead.py --models opt-125m --variants engine,app --out DIR
Dry run of the code path on the CPU (numbers mean nothing; do not commit them):
    python benchmarks/overhead.py --device cpu --config tests/fixtures/tiny-opt.json \\
        --tokens 20 --pairs 2 --variants plain,engine,app --out /tmp/overhead
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

from _common import write_json  # benchmarks/ is sys.path[0] for a script

from vramtui import __version__
from vramtui.errors import UsageError
from vramtui.measure import nvml
from vramtui.measure.device_inventory import available
from vramtui.measure.recorder import Recorder
from vramtui.measure.summary_format import summary as summary_of
from vramtui.report.export import atomic_write, check_writable
from vramtui.runspec import RunSpec, model_label, resolve
from vramtui.sweep.grid import parse_names


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

    from vramtui.measure.engine.device import resolve_device
    from vramtui.measure.engine.model import build, generate_kwargs, random_prompt
    from vramtui.runspec import resolve_dtype

    spec = RunSpec.from_dict(json.loads(spec_json))
    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = build(spec, device, resolve_dtype(spec.dtype, device.type)).model
    ids = random_prompt(spec, model.config).to(device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    t_gen = time.monotonic()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, **generate_kwargs(model, spec.tokens))
    sync()
    generate_s = time.monotonic() - t_gen

    tokens = int(out.shape[1] - ids.shape[1])
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine() or "CPU")
    )
    print(
        json.dumps(
            {
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
            }
        )
    )


def run_plain(spec: RunSpec) -> Measurement:
    env = dict(
        os.environ,
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--plain-child", json.dumps(spec.to_dict())],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"plain run of {spec.model} failed ({proc.returncode}): {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds = data["generate_s"]
    return Measurement(
        "plain", data["tokens"], seconds, data["tokens"] / seconds, data["pid"], data["environment"]
    )


def require_completed(summary: dict[str, Any], what: str) -> None:
    """Raise, saying why, unless the run a session summary describes completed."""
    if summary["status"] != "completed":
        failure = summary["failure"] or {}
        raise RuntimeError(
            f"{what} {summary['status']}: {failure.get('kind')}: {failure.get('message')}"
        )


# ---- variant: the instrumented engine (`vramtui run`) ------------------------------------


def run_engine(spec: RunSpec) -> Measurement:
    summary = summary_of(Recorder.for_run(resolve(spec, available())).run().snapshot())
    require_completed(summary, f"vramtui run of {spec.model}")
    timings = summary["timings"]
    env = summary["environment"]
    return Measurement(
        "engine",
        timings["tokens"],
        timings["generate_s"],
        timings["tokens_per_s"],
        env.get("engine_pid"),
        env,
    )


# ---- variant: the engine with the app attached ------------------------------------------

APP_SIZE = (120, 40)
APP_TIMEOUT_S = 180.0  # one app run, start to summary; --run-timeout sets it


def textual_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textual")
    except PackageNotFoundError:
        return None


async def drive_app(spec: RunSpec, save_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Run the app headless on `spec` as `vramtui ... --start` would, until its run ends."""
    from vramtui.tui.app import VramApp

    app = VramApp(spec, start=True, out_dir=save_dir)
    started = time.monotonic()
    deadline = started + timeout_s
    async with app.run_test(size=APP_SIZE) as pilot:
        while True:
            run = app.current
            if run is not None and run.ended:
                break
            if run is None and time.monotonic() > started + 5.0:
                # still on the start screen: a spec the form refuses stays there
                shown = [str(w.render()) for w in app.screen.query(".field-error.-shown")]
                if shown:
                    raise RuntimeError(f"the app refused the spec: {' | '.join(shown)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the app's run did not end within {timeout_s:.0f} s "
                    f"({run.session.snapshot().tokens_done if run else 0} tokens)"
                )
            await pilot.pause(0.2)
        await pilot.pause(0.2)  # let the summary screen mount, as a user would see it
        summary = summary_of(run.session.snapshot())
        screen = type(app.screen).__name__
        app.exit(0)
    return {"summary": summary, "screen": screen}


def app_child(spec_json: str, timeout_s: float) -> None:
    """In the fresh process: the app on `spec`, headless; print the run's summary as JSON."""
    import asyncio
    import tempfile

    spec = RunSpec.from_dict(json.loads(spec_json))
    with tempfile.TemporaryDirectory(prefix="vramtui-overhead-") as folder:
        result = asyncio.run(drive_app(spec, Path(folder), timeout_s))
    result["textual"] = textual_version()
    print(json.dumps(result))


def run_app_attached(spec: RunSpec) -> Measurement:
    """The engine while the app shows it live: the figure users will see."""
    timeout = APP_TIMEOUT_S
    proc = subprocess.run(
        [sys.executable, __file__, "--app-child", json.dumps(spec.to_dict()), str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 60.0,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"app run of {spec.model} failed ({proc.returncode}): {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = data["summary"]
    require_completed(summary, f"app run of {spec.model}")
    timings = summary["timings"]
    env = dict(
        summary["environment"],
        textual=data["textual"],
        app_screen_at_end=data["screen"],
        app_size=list(APP_SIZE),
    )
    return Measurement(
        "app",
        timings["tokens"],
        timings["generate_s"],
        timings["tokens_per_s"],
        env.get("engine_pid"),
        env,
    )


VARIANTS: dict[str, Callable[[RunSpec], Measurement]] = {
    "plain": run_plain,
    "engine": run_engine,
    "app": run_app_attached,
}

# The ratios reported, numerator / denominator, where both were measured.
RATIOS: list[tuple[str, str]] = [("engine", "plain"), ("app", "engine"), ("app", "plain")]


# ---- the experiment ----------------------------------------------------------------------


def measure(
    spec: RunSpec, variants: list[str], pairs: int, log: Callable[[str], None]
) -> tuple[dict[str, list[Measurement]], str | None]:
    """The rounds; on a failure, the complete rounds so far and what failed."""
    out: dict[str, list[Measurement]] = {v: [] for v in variants}
    for k in range(pairs):
        order = variants if k % 2 == 0 else variants[::-1]
        got: dict[str, Measurement] = {}
        try:
            for variant in order:
                m = VARIANTS[variant](RunSpec.from_dict(spec.to_dict()))
                if m.tokens != spec.tokens:
                    raise RuntimeError(f"{variant} generated {m.tokens} tokens, not {spec.tokens}")
                got[variant] = m
        except Exception as exc:  # noqa: BLE001 - keep the rounds already measured
            error = f"{spec.model} round {k + 1}: {type(exc).__name__}: {exc}"
            log(error)
            return out, error
        for variant, m in got.items():
            out[variant].append(m)
        rates = ", ".join(f"{v} {out[v][-1].tokens_per_s:.1f}" for v in variants)
        log(f"{spec.model} round {k + 1}/{pairs}: {rates} tok/s")
    return out, None


def model_result(runs: dict[str, list[Measurement]]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "tokens_per_s": {v: [m.tokens_per_s for m in ms] for v, ms in runs.items()},
        "generate_s": {v: [m.generate_s for m in ms] for v, ms in runs.items()},
        "median_tokens_per_s": {
            v: statistics.median(m.tokens_per_s for m in ms) for v, ms in runs.items()
        },
        "pids": {v: [m.pid for m in ms] for v, ms in runs.items()},
        "ratios": {},
        "median_ratio": {},
    }
    for top, bottom in RATIOS:
        if top not in runs or bottom not in runs:
            continue
        name = f"{top}/{bottom}"
        ratios = [
            m.tokens_per_s / d.tokens_per_s for m, d in zip(runs[top], runs[bottom], strict=True)
        ]
        result["ratios"][name] = ratios
        result["median_ratio"][name] = statistics.median(ratios)
    return result


def environment(runs: dict[str, dict[str, list[Measurement]]]) -> dict[str, Any]:
    first = next(iter(runs.values()))
    env = dict(next(iter(first.values()))[0].environment)
    env["driver"] = nvml.driver_version() or env.get("driver")
    env["vramtui"] = __version__
    for variant in ("engine", "app"):
        if first.get(variant):
            seen = first[variant][0].environment
            env["engine_device_name"] = seen.get("gpu_name") or seen.get("device_name")
            env.setdefault("device_name", env["engine_device_name"])
    if first.get("app"):
        env["textual"] = first["app"][0].environment.textual
    env["textual"] = env.get("textual") or textual_version()
    return env


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    variants = report["variants"]
    versions = " · ".join(
        f"{label} {env[key]}"
        for key, label in (
            ("driver", "driver"),
            ("cuda_runtime", "CUDA"),
            ("torch", "torch"),
            ("transformers", "transformers"),
            ("textual", "textual"),
            ("vramtui", "vramtui"),
        )
        if env.get(key)
    )
    s = report["settings"]
    ratio_names = [f"{t}/{b}" for t, b in RATIOS if t in variants and b in variants]
    lines = [
        f"**{env.get('device_name')}** · {versions}",
        "",
        f"`{report['command']}`",
        "",
        f"{s['tokens']} new tokens, prompt of {s['prompt_tokens']} tokens, greedy, batch "
        f"{s['batch']}, {s['dtype'] or 'default dtype'}, {s['pairs']} interleaved rounds of "
        "fresh processes; tok/s = tokens / seconds around `model.generate` alone"
        + (f"; app = the app headless at {APP_SIZE[0]}x{APP_SIZE[1]}" if "app" in variants else "")
        + ".",
        "",
        "| model | "
        + " | ".join(f"{v} tok/s" for v in variants)
        + " | "
        + " | ".join(n.replace("/", " / ") for n in ratio_names)
        + " |",
        "| --- | " + " | ".join("---:" for _ in variants + ratio_names) + " |",
    ]
    for model, r in report["models"].items():
        cells = [model] + [f"{r['median_tokens_per_s'][v]:.1f}" for v in variants]
        for name in ratio_names:
            ratios = r["ratios"][name]
            cells.append(f"{r['median_ratio'][name]:.3f} ({min(ratios):.3f}–{max(ratios):.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Medians over the rounds; a ratio column: median (min–max) of the per-round ratios.",
    ]
    lines += [f"\nStopped early: {error}" for error in report.get("errors", [])]
    return "\n".join(lines) + "\n"


def build_specs(args: argparse.Namespace) -> list[RunSpec]:
    models = parse_names("--models", args.models) if args.models else []
    configs = parse_names("--config", args.config) if args.config else []
    refs = [(name, "architecture", None) for name in models]
    refs += [(model_label(p), "config", p) for p in configs]
    devices = available()
    specs = []
    for name, source, path in refs:
        spec = RunSpec(
            model=name,
            source=source,
            path=path,
            tokens=args.tokens,
            prompt_tokens=args.prompt_tokens,
            batch=args.batch,
            dtype=args.dtype,
            device=args.device,
            seed=0,
        )
        specs.append(resolve(spec, devices).spec)  # the model's canonical name
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
    parser.add_argument(
        "--variants", default="plain,engine", help=f"comma-separated, any of: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=APP_TIMEOUT_S,
        help="seconds one app run may take, start to summary",
    )
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
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--app-child":
        app_child(sys.argv[2], float(sys.argv[3]))
        return 0
    args = parse_args(argv)
    global APP_TIMEOUT_S
    APP_TIMEOUT_S = args.run_timeout
    try:
        variants = parse_names("--variants", args.variants)
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or len(set(variants)) != len(variants):
            raise UsageError(f"--variants: any of {', '.join(VARIANTS)}, each once")
        specs = build_specs(args)
        args.out.mkdir(parents=True, exist_ok=True)
        paths = [
            check_writable(args.out / name, force=args.force)
            for name in ("overhead.json", "overhead.md")
        ]
    except UsageError as exc:
        print(f"overhead: {exc}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    runs: dict[str, dict[str, list[Measurement]]] = {}
    errors: list[str] = []
    for spec in specs:
        measured, error = measure(spec, variants, args.pairs, log)
        if error:
            errors.append(error)
        if measured[variants[0]]:
            runs[spec.model] = measured
    if not runs:
        print(f"overhead: nothing measured: {'; '.join(errors)}", file=sys.stderr)
        return 1
    report = {
        "command": shlex.join(["python", "benchmarks/overhead.py", *(argv or sys.argv[1:])]),
        "settings": {
            "tokens": args.tokens,
            "prompt_tokens": args.prompt_tokens,
            "batch": args.batch,
            "dtype": args.dtype,
            "device": args.device,
            "pairs": args.pairs,
        },
        "variants": variants,
        "environment": environment(runs),
        "models": {model: model_result(r) for model, r in runs.items()},
        "measurements": {
            model: {v: [asdict(m) for m in ms] for v, ms in r.items()} for model, r in runs.items()
        },
        "errors": errors,
    }
    write_json(paths[0], report)
    atomic_write(paths[1], markdown(report))
    for model, r in report["models"].items():
        rates = ", ".join(f"{v} {t:.1f}" for v, t in r["median_tokens_per_s"].items())
        print(f"{model}: median tok/s {rates}")
        for name, ratio in r["median_ratio"].items():
            ratios = r["ratios"][name]
            print(
                f"{model}: {name.replace('/', ' / ')} tok/s = {ratio:.3f} (median of "
                f"{len(ratios)}; {min(ratios):.3f}-{max(ratios):.3f})"
            )
    env = report["environment"]
    print(
        f"on {env.get('device_name')}, driver {env.get('driver')}, torch {env.get('torch')}, "
        f"transformers {env.get('transformers')}, textual {env.get('textual')}"
    )
    for error in errors:
        print(f"FAILED: {error}")
    print(f"wrote {paths[0]} and {paths[1]}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
