"""A program that runs out of GPU memory inside generate(): what `vramtui profile` keeps.

opt-125m's architecture (random weights) with eager attention and a batch far too
large: the prefill's attention scores alone need more than any GPU has. One
small generate() first, so the session shows the run-up to the failure.

    vramtui profile --json oom.json examples/out_of_memory.py
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, OPTConfig


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit(
            "this example needs a CUDA GPU (on the CPU it would take the machine's RAM)"
        )
    device = torch.device("cuda")
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            OPTConfig(), dtype=torch.float16, attn_implementation="eager"
        ).eval()
    prompt = torch.randint(3, 50000, (1, 512), device=device)
    with torch.inference_mode():
        model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        print("the small call fitted; now a batch of 8192")
        batch = prompt.repeat(
            8192, 1
        )  # scores: 8192 x 12 heads x 512 x 512 x 2 B = 51.5 GB a layer
        model.generate(batch, max_new_tokens=8, min_new_tokens=8, do_sample=False)


if __name__ == "__main__":
    main()
