"""`vramtui.track()` where a program cannot be wrapped (a notebook cell, a server).

python examples/track_block.py track.json && vramtui show track.json
"""

from __future__ import annotations

import sys

import torch
from transformers import AutoModelForCausalLM, OPTConfig

import vramtui


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "track.json"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with vramtui.track(json=path, name="track_block"):
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(OPTConfig(), dtype=dtype).eval()
        prompt = torch.randint(3, 50000, (4, 16), device=device)
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False)
            model.generate(prompt[:1], max_new_tokens=32, min_new_tokens=32, num_beams=4)
    print(f"session written to {path}")


if __name__ == "__main__":
    main()
