"""The engine's measuring checks on a real GPU.

1. `vramtui run --model opt-1.3b --tokens 2000`: the reported peak allocated
   equals torch.cuda.max_memory_allocated() of an uninstrumented process doing
   the same build and generate, to the byte;
2. a sample for 100 % of tokens;
3. NVML readings at >= 100 Hz over the decode;
4. weights bytes within 1 % of parameters x 2.

Usage: python benchmarks/verify_engine.py --out benchmarks/results/verify_engine.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment_line, gpu_environment, run_command, write_json  # noqa: E402

PLAIN = """
import json, sys, time, torch
from vramtui.measure.engine.model import build
from vramtui.runspec import RunSpec
spec = RunSpec(**json.loads(sys.argv[1]))
device = torch.device("cuda:0")
torch.cuda.set_device(device)
built = build(spec, device, "float16")
model = built.model
vocab = model.config.vocab_size
gen = torch.Generator(device="cpu").manual_seed(spec.seed)
ids = torch.randint(4, vocab, (spec.batch, spec.prompt_tokens), generator=gen).to(device)
pad = model.config.pad_token_id
with torch.inference_mode():
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec.tokens,
                   min_new_tokens=spec.tokens, do_sample=False, num_beams=1, use_cache=True,
                   pad_token_id=pad)
torch.cuda.synchronize()
print(json.dumps({"max_memory_allocated": torch.cuda.max_memory_allocated(),
                  "max_memory_reserved": torch.cuda.max_memory_reserved()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="opt-1.3b")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = gpu_environment()
    tmp = Path(tempfile.mkdtemp())
    cmd = run_command(args.model, args.tokens, tmp)
    subprocess.run(cmd, check=True)
    summary = json.loads((tmp / "run.json").read_text())
    spec = {k: summary["spec"][k] for k in ("model", "tokens", "prompt_tokens", "batch", "seed")}
    spec["attn"] = summary["spec"]["attn"]
    plain = json.loads(
        subprocess.run(
            [sys.executable, "-c", PLAIN, json.dumps(spec)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with open(tmp / "run.csv") as f:
        rows = list(csv.DictReader(f))
    # one engine row per token (token 0's says prefill, the rest decode)
    decode_rows = [r for r in rows if r["source"] == "engine" and r["token"]]
    tokens = sorted(int(r["token"]) for r in decode_rows)
    t_decode = [float(r["t_s"]) for r in decode_rows]
    nvml_in_decode = [
        r for r in rows if r["source"] == "nvml" and t_decode[0] <= float(r["t_s"]) <= t_decode[-1]
    ]
    nvml_hz = len(nvml_in_decode) / (t_decode[-1] - t_decode[0])
    params = summary["params"]
    result = {
        "command": " ".join(["vramtui", *cmd[3:]]),
        "environment": env,
        "engine_environment": summary["environment"],
        "peak_allocated_bytes_reported": summary["peak_allocated_bytes"],
        "engine_own_max_allocated": summary["timings"]["max_allocated"],
        "plain_process_max_memory_allocated": plain["max_memory_allocated"],
        "peak_equal_to_the_byte": summary["peak_allocated_bytes"] == plain["max_memory_allocated"],
        "tokens_requested": args.tokens,
        "token_samples": len(tokens),
        "token_indices_complete": tokens == list(range(args.tokens)),
        "nvml_readings_during_decode": len(nvml_in_decode),
        "nvml_hz_during_decode": round(nvml_hz, 1),
        "nvml_process_source": summary["environment"].get("nvml_process_source"),
        "weights_bytes": summary["weights_bytes"],
        "params": params,
        "weights_over_2x_params": summary["weights_bytes"] / (2 * params),
        "tokens_per_s": summary["tokens_per_s"],
        "peak_nvml_process_bytes": summary["peak_nvml_process_bytes"],
        "peak_reserved_bytes": summary["peak_reserved_bytes"],
    }
    write_json(args.out, result)
    print(environment_line(env))
    for key in (
        "peak_allocated_bytes_reported",
        "plain_process_max_memory_allocated",
        "peak_equal_to_the_byte",
        "token_samples",
        "token_indices_complete",
        "nvml_hz_during_decode",
        "weights_over_2x_params",
        "tokens_per_s",
    ):
        print(f"{key}: {result[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
