"""The GPU check of `vramtui profile` with NVML: a small CUDA program profiled headless.

    python benchmarks/profile_cuda_nvml.py [--out DIR] [--tokens N]

Writes a small program (a tiny OPT built from a config with random weights, on the
GPU in float16: a few matmuls, then generate()), runs `vramtui profile` of this
checkout on it, and reads back the session JSON it saved: the NVML samples it
recorded and the process's peak by NVML. Exits 1 if the profile failed or no NVML
sample was recorded (what `vramtui profile` of a CUDA program must always have).
Needs torch with CUDA, transformers and nvidia-ml-py; not textual (headless).

Writes DIR/profile_cuda_nvml-session.json (the session as `profile --json` writes
it) and DIR/profile_cuda_nvml.json (this check's figures, the command and the
device).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import gpu_environment, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """\
import sys

import torch
from transformers import AutoModelForCausalLM, OPTConfig

tokens = int(sys.argv[1])
assert torch.cuda.is_available(), "this check needs a CUDA GPU"
x = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
for _ in range(200):
    x = torch.nn.functional.normalize(x @ x, dim=-1)
torch.cuda.synchronize()
config = OPTConfig(hidden_size=256, ffn_dim=1024, num_hidden_layers=4, num_attention_heads=4,
                   word_embed_proj_dim=256)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float16).eval()
prompt = torch.randint(3, 50000, (4, 32), device="cuda")
with torch.inference_mode():
    out = model.generate(prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
print("generated", tuple(out.shape))
"""


def profile(
    program: Path, tokens: int, session_json: Path, sessions: Path
) -> tuple[list[str], int]:
    """`vramtui profile` of this checkout on `program`; the command and its exit code."""
    command = [sys.executable, "-m", "vramtui", "profile", "--json", str(session_json)]
    command += ["--force", "--out", str(sessions), str(program), str(tokens)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return command, subprocess.run(command, env=env, cwd=ROOT).returncode


def figures(session: dict[str, Any]) -> dict[str, Any]:
    """What the check reads of the saved session."""
    environment = session.get("environment") or {}
    return {
        "status": session.get("status"),
        "nvml_samples": session.get("nvml_samples") or 0,
        "nvml_rate_hz": session.get("nvml_rate_hz"),
        "peak_nvml_process_bytes": session.get("peak_nvml_process_bytes"),
        "peak_nvml_device_used_bytes": session.get("peak_nvml_device_used_bytes"),
        "peak_allocated_bytes": session.get("peak_allocated_bytes"),
        "nvml_process_source": environment.get("nvml_process_source"),
        "notices": session.get("notices") or [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/profile")
    parser.add_argument("--tokens", type=int, default=200, help="new tokens per sequence")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    session_json = args.out / "profile_cuda_nvml-session.json"
    with tempfile.TemporaryDirectory(prefix="vramtui-cuda-nvml-") as tmp:
        program = Path(tmp) / "cuda_program.py"
        program.write_text(PROGRAM)
        command, code = profile(program, args.tokens, session_json, Path(tmp))
    if not session_json.is_file():
        print(f"FAIL: vramtui profile exited {code} and saved no session at {session_json}")
        return 1
    found = figures(json.loads(session_json.read_text()))
    result = {
        "command": command,
        "profile_exit_code": code,
        **found,
        "environment": gpu_environment(),
    }
    write_json(args.out / "profile_cuda_nvml.json", result)
    peak = found["peak_nvml_process_bytes"]
    print(
        f"profile rc {code}, status {found['status']}: {found['nvml_samples']} NVML samples "
        f"(source {found['nvml_process_source']}), peak process bytes by NVML {peak}"
    )
    for notice in found["notices"]:
        print(f"  notice: {notice}")
    if code != 0 or found["nvml_samples"] == 0:
        print("FAIL: " + ("no NVML sample was recorded" if code == 0 else "the profile failed"))
        return 1
    print("OK: the NVML series was recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
