"""Two generate() calls in one program: a sampled reply, then a batch with beam search.

A user's program as vramtui finds it: it knows nothing of vramtui. It builds
opt-125m's architecture (transformers' OPTConfig defaults) with random weights,
so nothing downloads, on the GPU when there is one. Watch its memory with

    vramtui profile --json run.json --csv run.csv examples/two_generations.py
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, OPTConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200, help="new tokens of the reply")
    parser.add_argument("--batch", type=int, default=8, help="prompts in the second call")
    parser.add_argument("--beams", type=int, default=4, help="beams in the second call")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(OPTConfig(), dtype=dtype).eval()
    torch.manual_seed(0)
    prompt = torch.randint(3, 50000, (1, 32), device=device)
    with torch.inference_mode():
        t = time.perf_counter()
        n = args.tokens
        model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=True, top_p=0.9)
        print(f"reply: {n} tokens in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        n = args.tokens // 2
        batch = prompt.repeat(args.batch, 1)
        model.generate(batch, max_new_tokens=n, min_new_tokens=n, num_beams=args.beams)
        seconds = time.perf_counter() - t
        print(f"batch: {args.batch} x {args.beams} beams, {n} tokens in {seconds:.2f} s")


if __name__ == "__main__":
    main()
