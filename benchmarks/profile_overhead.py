"""What `vramtui profile` costs the user's program in decode speed.

Two variants, each a fresh process, in K interleaved rounds (order alternating:
plain, profiled / profiled, plain / ...):
  plain     `python benchmarks/profile_overhead.py --program ...`: this file, as a
            user's program: builds an OPT architecture from its config with random
            weights on the device, one warm-up generate() of 16 tokens, then C timed
            generate() calls of N tokens (greedy, min = max new tokens, batch 1);
  profiled  the same command under `vramtui profile -q --json ...`: the hooks in the
            program's process (a sample after every step, the KV cache counted,
            a sampler thread between calls) and NVML polled by vramtui beside it.
The program times each call itself (`time.perf_counter()` around generate(),
with `torch.cuda.synchronize()` inside the timed region) and writes the tok/s
of every call; a process's figure is the median of its C calls. The ratio
profiled / plain is taken per round; the result is its median (goal >= 0.97,
i.e. at most 3 % fewer tokens a second). The profiled session is checked to
hold the C + 1 generations with N tokens each.

On a GPU box:
    python benchmarks/profile_overhead.py --model opt-125m --out DIR/profile_overhead-h200
The hooks alone, A/B in one process (every other generate() call hooked):
    python benchmarks/profile_overhead.py --in-process --calls 10 \\
        --out DIR/profile_overhead-in-process-h200
Dry run on the CPU (numbers mean nothing; do not commit them):
    python benchmarks/profile_overhead.py --model tiny --tokens 8 --calls 2 --rounds 2 --out /tmp/po
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# OPT architectures as published (hidden, layers, heads, ffn); "tiny" for a CPU dry run.
SIZES = {
    "opt-125m": (768, 12, 12, 3072),
    "opt-1.3b": (2048, 24, 32, 8192),
    "tiny": (32, 2, 4, 64),
}


def build(args: argparse.Namespace) -> tuple[Any, Any, bool]:
    """The model (random weights, on the GPU when there is one), a prompt, and whether CUDA."""
    import torch
    from transformers import AutoModelForCausalLM, OPTConfig

    hidden, layers, heads, ffn = SIZES[args.model]
    config = OPTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        ffn_dim=ffn,
        word_embed_proj_dim=hidden,
    )
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.enable_cudnn_sdp(False)  # a graph per length otherwise: slow
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float16 if cuda else torch.float32
        ).eval()
    torch.manual_seed(0)
    prompt = torch.randint(3, 50000, (1, 8), device=device)
    return model, prompt, cuda


def timed(model: Any, prompt: Any, n: int, cuda: bool) -> float:
    """tok/s of one greedy generate() of exactly n new tokens."""
    import time

    import torch

    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        if cuda:
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t)


def program(args: argparse.Namespace) -> None:
    """The user's program: knows nothing of vramtui."""
    model, prompt, cuda = build(args)
    timed(model, prompt, 16, cuda)
    rates = [timed(model, prompt, args.tokens, cuda) for _ in range(args.calls)]
    Path(args.result).write_text(json.dumps(rates))


def in_process(args: argparse.Namespace) -> dict[str, Any]:
    """The hooks alone, A/B in one process (no process-to-process spread): generate()
    calls alternately with and without them, events written to /dev/null."""
    import os

    from vramtui.measure.script.hooks import Instrument

    model, prompt, cuda = build(args)
    timed(model, prompt, 16, cuda)
    instrument = Instrument(open(os.devnull, "w").write)  # noqa: SIM115 - lives to the end
    instrument.start()
    pairs = []
    for k in range(args.calls):
        rates = {}
        for hooked in (False, True) if k % 2 == 0 else (True, False):
            if hooked:
                instrument.install()
            rates[hooked] = timed(model, prompt, args.tokens, cuda)
            instrument.uninstall()
        pairs.append({"plain": rates[False], "hooked": rates[True]})
        print(f"pair {k}: ratio {rates[True] / rates[False]:.4f}", file=sys.stderr)
    instrument.stop()
    ratios = [p["hooked"] / p["plain"] for p in pairs]
    return {
        "mode": "in-process A/B",
        "model": args.model,
        "tokens": args.tokens,
        "pairs": pairs,
        "plain_tok_s": statistics.median(p["plain"] for p in pairs),
        "hooked_tok_s": statistics.median(p["hooked"] for p in pairs),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "goal": ">= 0.97",
    }


def one(args: argparse.Namespace, profiled: bool, folder: Path, n: int) -> dict[str, Any]:
    result = folder / f"rates-{n}.json"
    me = [str(Path(__file__).resolve()), "--program", "--result", str(result)]
    me += ["--model", args.model, "--tokens", str(args.tokens), "--calls", str(args.calls)]
    session = folder / f"session-{n}.json"
    wrap = ["-m", "vramtui", "profile", "-q", "--out", str(folder), "--json", str(session)]
    cmd = [sys.executable, *(wrap if profiled else []), *me]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rates = json.loads(result.read_text())
    row: dict[str, Any] = {"profiled": profiled, "rates": rates, "median": statistics.median(rates)}
    if profiled:
        generations = json.loads(session.read_text())["generations"]
        got = [g["tokens_generated"] for g in generations]
        if got != [16] + [args.tokens] * args.calls:
            raise SystemExit(f"the profiled session holds {got}, not the calls made")
        row["generations"] = len(generations)
    return row


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            runs = {p: one(args, p, folder, 2 * r + i) for i, p in enumerate(order)}
            ratio = runs[True]["median"] / runs[False]["median"]
            rounds.append({"plain": runs[False], "profiled": runs[True], "ratio": ratio})
            print(f"round {r}: ratio {ratio:.4f}", file=sys.stderr)
    ratios = [r["ratio"] for r in rounds]
    return {
        "model": args.model,
        "tokens": args.tokens,
        "calls": args.calls,
        "rounds": rounds,
        "plain_tok_s": statistics.median(r["plain"]["median"] for r in rounds),
        "profiled_tok_s": statistics.median(r["profiled"]["median"] for r in rounds),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "goal": ">= 0.97",
    }


def markdown(result: dict[str, Any], env_line: str, command: str) -> str:
    return "\n".join(
        [
            f"**{env_line}**",
            "",
            f"`{command}`",
            "",
            f"{result['calls']} timed generate() calls of {result['tokens']} new tokens "
            "(after one of 16) in each fresh process, greedy, batch 1, fp16 on the GPU; "
            f"{len(result['rounds'])} interleaved rounds.",
            "",
            "| model | plain tok/s | profiled tok/s | profiled / plain (median, min–max) |",
            "| --- | ---: | ---: | ---: |",
            f"| {result['model']} | {result['plain_tok_s']:.1f} | {result['profiled_tok_s']:.1f} "
            f"| {result['ratio_median']:.3f} "
            f"({result['ratio_min']:.3f}–{result['ratio_max']:.3f}) |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(SIZES), default="opt-125m")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--run-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--in-process", action="store_true", help="A/B the hooks in one process, --calls pairs"
    )
    args = parser.parse_args()
    if args.program:
        program(args)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import environment_line, gpu_environment, write_json

    env = gpu_environment()
    if args.in_process:
        result = {"environment": env, **in_process(args)}
        print(json.dumps(result, indent=2))
        if args.out:
            write_json(args.out.with_suffix(".json"), result)
        return
    result = {"environment": env, **measure(args)}
    command = "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    text = markdown(result, environment_line(env), command)
    print(text)
    if args.out:
        write_json(args.out.with_suffix(".json"), result)
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
