"""What `vramtui profile`'s training hooks cost a training step, A/B in one process.

A Llama-architecture model (random weights, bfloat16 on CUDA) trains on random token
ids with AdamW: forward with labels = ids, backward, optimizer.step(), zero_grad. After
W warm-up steps, R rounds of S timed steps each, order ABBA (plain, hooked, hooked,
plain, ...): hooked blocks run with vramtui's training hooks installed (the optimizer
step hooks and the root module's forward hooks, a sample at each phase line, events
written to /dev/null), plain blocks with them removed. A step is timed with
`torch.cuda.synchronize()` at its edges; a block's figure is its median step time. The
result is the median over rounds of plain / hooked step time (goal >= 0.97).

On a GPU box:
    python benchmarks/profile_train_overhead.py --out DIR/profile_train_overhead-h100.json
Dry run on the CPU (numbers mean nothing; do not commit them):
    python benchmarks/profile_train_overhead.py --hidden 64 --layers 2 --seq 32 --batch 2 \\
        --rounds 2 --steps 2 --warmup 1 --out /tmp/pto.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from vramtui.measure.script.hooks import Instrument


def build(args: argparse.Namespace, device: torch.device) -> Any:
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        max_position_embeddings=max(args.seq, 128),
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(config).to(dtype)


def step(model: Any, optimizer: Any, ids: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(args, device)
    sink = open(os.devnull, "w")  # noqa: SIM115 - the hooks' events, for the whole run
    instrument = Instrument(sink.write)
    instrument.ensure_hello(device)
    instrument.training.install()  # the optimizer made under the hooks, as in a program
    optimizer = torch.optim.AdamW(model.parameters())
    ids = torch.randint(4, 32000, (args.batch, args.seq), device=device)
    for _ in range(args.warmup):  # step 1 (states made, parts counted) among them
        step(model, optimizer, ids, device)
    hooked = True
    rounds = []
    for r in range(args.rounds):
        block: dict[str, float] = {}
        for name in ("plain", "hooked") if r % 2 == 0 else ("hooked", "plain"):
            want = name == "hooked"
            if want != hooked:
                if want:
                    instrument.training.install()
                    instrument.training.made(optimizer)
                else:
                    instrument.training.uninstall()
                hooked = want
            block[name] = statistics.median(
                step(model, optimizer, ids, device) for _ in range(args.steps)
            )
        rounds.append({**block, "ratio": block["plain"] / block["hooked"]})
    instrument.training.uninstall()
    sink.close()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": {"hidden": args.hidden, "layers": args.layers},
        "batch": args.batch,
        "seq": args.seq,
        "rounds": rounds,
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps a block")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"plain / hooked step time: median {result['median_ratio']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
