"""The approximate training estimate (written from a config's numbers) against the
traced one (two steps of the model's code on the meta device), on the CPU.

For a handful of catalogue models x {full, lora, qlora} x checkpointing off and on, at
one micro-batch and sequence, both are replayed on the CUDA allocator model and
compared: the exact terms (weights, gradients, optimizer states) must be equal; the
peak allocated, the peak reserved and the activations differ by the spread written
(each cell's relative error, and their least, median and most). The traced side
spawns the tracer (a child process a cell, cached on disk afterwards).

    python benchmarks/train_approx.py \
        --out benchmarks/results/train_approx/train_approx-cpu-dev.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import package_versions, write_json  # noqa: E402

from vramtui.models.catalogue import CATALOGUE  # noqa: E402
from vramtui.predict.training.config_steps import config_train_trace  # noqa: E402
from vramtui.predict.training.replay import TrainingEstimate, estimate_training  # noqa: E402
from vramtui.predict.training.trace import TrainShape, train_trace  # noqa: E402

MODELS = ("qwen2.5-0.5b", "llama-3.2-1b", "pythia-410m", "qwen3-0.6b", "opt-1.3b", "opt-350m")
EXACT = ("weights_bytes", "trainable_weights_bytes", "gradients_bytes", "optimizer_states_bytes")
COMPARED = ("peak_allocated_bytes", "peak_reserved_bytes", "activations_bytes")


def _cell(model: str, shape: TrainShape) -> dict[str, Any]:
    entry = CATALOGUE[model]
    config = dict(entry.config)
    started = time.perf_counter()
    traced = estimate_training(train_trace(model, config, shape), shape)
    traced_s = time.perf_counter() - started
    started = time.perf_counter()
    written_trace = config_train_trace(config, shape)
    assert written_trace is not None, model
    written = estimate_training(written_trace, shape)
    written_ms = (time.perf_counter() - started) * 1000
    return {
        "model": model, "method": shape.method, "grad_checkpointing": shape.grad_checkpointing,
        "batch": shape.batch, "seq": shape.seq,
        "exact_terms_equal": all(getattr(traced, t) == getattr(written, t) for t in EXACT),
        "traced": _figures(traced), "approximate": _figures(written),
        "error": {t: _error(getattr(written, t), getattr(traced, t)) for t in COMPARED},
        "peak_phase": {"traced": traced.peak_phase, "approximate": written.peak_phase},
        "traced_s": round(traced_s, 2), "approximate_ms": round(written_ms, 2),
    }  # fmt: skip


def _figures(est: TrainingEstimate) -> dict[str, int]:
    return {t: getattr(est, t) for t in (*EXACT, *COMPARED)}


def _error(approx: int, traced: int) -> float:
    return round((approx - traced) / traced, 4) if traced else 0.0


def _spread(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for term in COMPARED:
        values = [c["error"][term] for c in cells]
        out[term] = {
            "least": min(values), "median": statistics.median(values), "most": max(values),
            "most_abs": max(abs(v) for v in values),
        }  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    cells = []
    for model in args.models:
        for method in ("full", "lora", "qlora"):
            for ckpt in (False, True):
                shape = TrainShape(method=method, batch=args.batch, seq=args.seq,
                                   grad_checkpointing=ckpt)  # fmt: skip
                cells.append(_cell(model, shape))
                c = cells[-1]
                print(model, method, "ckpt" if ckpt else "-", c["error"], flush=True)
    write_json(
        args.out,
        {
            "what": "approximate training estimate vs the traced one, CUDA allocator model, "
            "bfloat16, sdpa, AdamW (replayed on the CPU: no GPU measurement)",
            "machine": "shared 2-core development machine (CPU only)",
            "versions": package_versions(("torch", "transformers", "peft", "vramtui")),
            "spread": _spread(cells),
            "all_exact_terms_equal": all(c["exact_terms_equal"] for c in cells),
            "cells": cells,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
