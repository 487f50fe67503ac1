"""What a static cache's compiled decode step adds (GPU only; the static-cache cells).

With `cache_implementation="static"` transformers compiles the decode step
(torch.compile, CUDA graphs). This builds a catalogue model with vramtui's engine
code, runs `generate` once compiled (the default) or with `disable_compile=True`,
and prints one JSON line: the allocator's figures after the load, at the peak and
at the end, each step's (length, allocated, peak, reserved) for the first steps,
and the segments of each memory pool (a CUDA graph's private pool is not (0, 0)).

    python benchmarks/static_compile_diagnosis.py TOKENS compiled|nocompile [MODEL] [HISTORY.pickle]

DIAG_PROMPT, DIAG_BATCH and DIAG_DTYPE (environment) change the prompt length (8),
the batch (1) and the dtype (float16).

With HISTORY, torch's memory history (every allocation with its Python stack) is
recorded through the load and `generate` and its snapshot saved there, for
`benchmarks/static_pool_report.py`.

Results: benchmarks/results/static-cache/static_compile_diagnosis-h200.jsonl.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import stamped  # noqa: E402
from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from vramtui.measure.engine.model import build, generate_kwargs, random_prompt  # noqa: E402
from vramtui.runspec.run_spec import RunSpec  # noqa: E402


class Probe(LogitsProcessor):
    """After each step: (length, allocated, peak allocated, reserved)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int, int, int]] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        c = torch.cuda
        now = (c.memory_allocated(), c.max_memory_allocated(), c.memory_reserved())
        self.steps.append((input_ids.shape[1], *now))
        return scores


def pools() -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for segment in torch.cuda.memory_snapshot():
        key = str(tuple(segment.get("segment_pool_id", (0, 0))))
        pool = found.setdefault(key, {"segments": 0, "total": 0, "allocated": 0})
        pool["segments"] += 1
        pool["total"] += segment["total_size"]
        pool["allocated"] += segment["allocated_size"]
    return found


def main(tokens: int, mode: str, name: str, history: str | None = None) -> dict[str, Any]:
    device = torch.device("cuda:0")
    if history:
        torch.cuda.memory._record_memory_history(stacks="python", max_entries=400_000)
    env = os.environ
    dtype = env.get("DIAG_DTYPE", "float16")
    prompt, batch = int(env.get("DIAG_PROMPT", "8")), int(env.get("DIAG_BATCH", "1"))
    spec = RunSpec(model=name, tokens=tokens, prompt_tokens=prompt, batch=batch,
                   device="cuda:0", dtype=dtype, cache="static")  # fmt: skip
    model = build(spec, device, dtype).model
    torch.cuda.synchronize()
    after_load = torch.cuda.memory_allocated()
    kwargs = generate_kwargs(model, tokens, spec.cache)
    if mode == "nocompile":
        kwargs["disable_compile"] = True
    ids = random_prompt(spec, model.config).to(device)
    torch.cuda.reset_peak_memory_stats()
    probe = Probe()
    start = time.time()
    model.generate(ids, logits_processor=LogitsProcessorList([probe]), **kwargs)
    torch.cuda.synchronize()
    if history:
        torch.cuda.memory._dump_snapshot(history)
    props = torch.cuda.get_device_properties(device)
    return {
        "model": name,
        "prompt": prompt,
        "batch": batch,
        "dtype": dtype,
        "l2_cache_size": getattr(props, "L2_cache_size", None),
        "mode": mode,
        "tokens": tokens,
        "seconds": round(time.time() - start, 2),
        "after_load": after_load,
        "peak_alloc": torch.cuda.max_memory_allocated(),
        "peak_reserved": torch.cuda.max_memory_reserved(),
        "end_alloc": torch.cuda.memory_allocated(),
        "pools": pools(),
        "first_steps": probe.steps[:4],
        "last_step": probe.steps[-1],
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    name = args[2] if len(args) > 2 else "llama-3.2-1b"
    result = main(int(args[0]), args[1], name, args[3] if len(args) > 3 else None)
    print(json.dumps(stamped(result)))  # one JSON line a process, collected by the caller
