"""Random weights allocate exactly as a checkpoint load: the proof, model by model.

For each model (a catalogue name or a config.json):
  1. `vramtui run` with random weights from the architecture (the engine's build);
  2. the same architecture saved as a safetensors checkpoint (random values,
     `save_pretrained` in a separate process);
  3. `vramtui run --checkpoint` of that folder (transformers' from_pretrained).
Then every engine sample of the two runs (the load sample and each token's
allocated, reserved and step peak) is compared, byte for byte, and the peaks
by phase. Needs a GPU for the figures to mean anything (runs on the CPU too).
With --quant, both runs quantize as they load (the checkpoint is saved unquantized, as
published checkpoints are), and their weights as stored (packed, quantization state,
full precision) are compared too.

    python benchmarks/checkpoint_parity.py --models opt-1.3b --configs q.json,phi3.json \\
        --tokens 20 --out $OUT/checkpoint_parity
    python benchmarks/checkpoint_parity.py --models opt-1.3b,llama-3.2-1b --quant nf4 \\
        --tokens 20 --out $OUT/checkpoint_parity-nf4
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import gpu_environment, write_json  # noqa: E402

SAVE = r"""
import json, sys, torch
from vramtui.measure.engine.random_weights import load_random
from vramtui.models.catalogue import CATALOGUE
from vramtui.models.hf import transformers_config
source, target, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
data = CATALOGUE[source].config if source in CATALOGUE else json.loads(open(source).read())
config = transformers_config(data, source)
device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
model = load_random(config, device, dtype, "sdpa")
model.save_pretrained(target, safe_serialization=True)
print("saved", sum(p.numel() for p in model.parameters()))
"""
FIELDS = ("allocated_bytes", "reserved_bytes", "step_peak_bytes")


def run(source: list[str], tokens: int, folder: Path, quant: str = "none") -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "vramtui", "run", *source, "--tokens", str(tokens)]
    command += ["--quant", quant]
    command += ["--csv", str(folder / "run.csv"), "--json", str(folder / "run.json"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return json.loads((folder / "run.json").read_text())


def engine_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "engine"]
    return [{k: r[k] for k in ("token", "phase", *FIELDS)} for r in rows]


def compare(
    name: str, source: list[str], tokens: int, work: Path, dtype: str, quant: str = "none"
) -> dict[str, Any]:
    random_run = run(source, tokens, work / "random", quant)
    checkpoint = work / "checkpoint"
    label = source[-1]
    saved = subprocess.run(
        [sys.executable, "-c", SAVE, label, str(checkpoint), dtype], capture_output=True, text=True
    )
    if saved.returncode != 0:
        raise RuntimeError(f"saving {name} failed: {saved.stderr[-2000:]}")
    loaded_run = run(["--checkpoint", str(checkpoint)], tokens, work / "loaded", quant)
    a, b = engine_rows(work / "random" / "run.csv"), engine_rows(work / "loaded" / "run.csv")
    differing = [{"random": x, "checkpoint": y} for x, y in zip(a, b, strict=False) if x != y]
    shutil.rmtree(checkpoint, ignore_errors=True)
    peaks = {
        key: {"random": random_run.get(key), "checkpoint": loaded_run.get(key)}
        for key in ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes")
    }
    split = [random_run.get("weights_split"), loaded_run.get("weights_split")]
    return {
        "model": name,
        "quant": quant,
        "tokens": tokens,
        "params": [random_run.get("params"), loaded_run.get("params")],
        "weights_split": split,
        "engine_samples": [len(a), len(b)],
        "identical": not differing and len(a) == len(b) and split[0] == split[1],
        "differing_samples": differing[:20],
        "peaks": peaks,
        "environment": random_run.get("environment"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="catalogue names, comma-separated")
    parser.add_argument("--configs", default="", help="config.json paths, comma-separated")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--quant", default="none", help="--quant of both runs (none, int8, nf4...)")
    parser.add_argument("--out", type=Path, required=True, help="folder for checkpoint_parity.json")
    args = parser.parse_args()
    sources = [(m, ["--model", m]) for m in args.models.split(",") if m]
    sources += [(Path(c).stem, ["--config", c]) for c in args.configs.split(",") if c]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in sources:
            work = Path(tmp) / name
            result = compare(name, source, args.tokens, work, args.dtype, args.quant)
            results.append(result)
            peaks = result["peaks"]["peak_allocated_bytes"]
            print(f"{name}: identical={result['identical']} peak allocated {peaks}", flush=True)
    write_json(
        args.out / "checkpoint_parity.json", {"environment": gpu_environment(), "runs": results}
    )
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
