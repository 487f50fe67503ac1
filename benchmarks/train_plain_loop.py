"""The training estimate against a plain PyTorch/peft training loop on the GPU.

Each cell runs in a fresh process: the model built from its config with random
weights directly on the GPU (QLoRA: every linear layer but the output head replaced by
bitsandbytes' Linear4bit, nf4 with double quantization and bfloat16 compute, quantized
as it moves to the GPU), the recipe applied as the estimate's tracer applies it
(vramtui.predict.training.recipe), then steps of `loss = model(input_ids=ids,
labels=ids).loss; loss.backward()` per micro-batch, `optimizer.step()`,
`optimizer.zero_grad(set_to_none=True)`. Torch's peak allocated is read and reset at
every phase boundary (after a synchronize), so each phase's peak of each step is
measured; peak reserved and the process's NVML memory at the end. The parent predicts
every cell with the training estimate and writes both, with the errors.

Usage (on a GPU machine; a cell of a 1B model takes well under a minute):
  python benchmarks/train_plain_loop.py --out benchmarks/results/train_plain_loop.json
  python benchmarks/train_plain_loop.py --models qwen2.5-0.5b --methods lora --seq 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.predict.training.replay import estimate_training  # noqa: E402
from vramtui.predict.training.trace import TrainShape, train_trace  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

STEPS = 3
OPTIMIZERS = {"adamw": "torch.optim.AdamW", "sgd": "torch.optim.SGD",
              "adamw-8bit": "bitsandbytes.optim.AdamW8bit",
              "paged-adamw-8bit": "bitsandbytes.optim.PagedAdamW8bit",
              "adafactor": "transformers.optimization.Adafactor"}  # fmt: skip


def _config(model: str) -> dict[str, Any]:
    gpu = DeviceList((DeviceChoice("cuda:0", "GPU", 80 * 10**9, 80 * 10**9),), True)
    resolved = resolve(RunSpec(model=model, tokens=1, prompt_tokens=1), gpu, environ={})
    assert resolved.config is not None, resolved.model_note
    return dict(resolved.config)


# ---- the child: one cell, measured -------------------------------------------------
def _four_bit(model: Any) -> None:
    import bitsandbytes as bnb
    import torch

    head = model.get_output_embeddings()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear) or child is head:
                continue
            new = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                    bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                    compress_statistics=True, quant_type="nf4")  # fmt: skip
            new.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False,
                                           compress_statistics=True, quant_type="nf4")  # fmt: skip
            if child.bias is not None:
                new.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, child_name, new)
    model.is_loaded_in_4bit = True


def _optimizer(name: str, params: list[Any]) -> Any:
    import importlib

    module, _, cls = OPTIMIZERS[name].rpartition(".")
    kwargs: dict[str, Any] = {"lr": 1e-3} if name == "sgd" else {}
    return getattr(importlib.import_module(module), cls)(params, **kwargs)


def measure(cell: dict[str, Any]) -> dict[str, Any]:
    import torch

    from vramtui.measure import nvml
    from vramtui.models.hf import model_class, transformers_config
    from vramtui.predict.training.recipe import apply_recipe, trainable

    shape = TrainShape(**cell["shape"])
    config = transformers_config(cell["config"])
    dtype = getattr(torch, shape.dtype)
    build_on = "cpu" if shape.method == "qlora" else "cuda"
    with torch.device(build_on):
        model = model_class(config)._from_config(
            config, dtype=dtype, attn_implementation=shape.attn
        )
    if shape.method == "qlora":
        _four_bit(model)
        model = model.cuda()  # bitsandbytes quantizes as the weights move
    model = apply_recipe(model, shape.method, shape.grad_checkpointing, shape.lora_r,
                         shape.lora_alpha, shape.lora_targets)  # fmt: skip
    opt = _optimizer(shape.optim, trainable(model))
    ids = torch.randint(0, config.get_text_config().vocab_size, (shape.batch, shape.seq),
                        device="cuda")  # fmt: skip
    peaks: dict[str, int] = {}
    reserved = [0]

    def boundary(label: str) -> None:
        torch.cuda.synchronize()
        peaks[label] = torch.cuda.max_memory_allocated()
        reserved[0] = max(reserved[0], torch.cuda.max_memory_reserved())
        torch.cuda.reset_peak_memory_stats()  # resets the reserved peak too

    boundary("load")
    for step in range(1, STEPS + 1):
        for _ in range(shape.grad_accum):
            loss = model(input_ids=ids, labels=ids).loss
            boundary(f"{step} forward")
            loss.backward()
            del loss
            boundary(f"{step} backward")
        opt.step()
        boundary(f"{step} optimizer")
        opt.zero_grad(set_to_none=True)
        boundary(f"{step} zero_grad")
    gpu = nvml.gpus()[torch.cuda.current_device()] if nvml.available() else None
    process = nvml.DeviceWatch(gpu, os.getpid(), None).read().process_bytes if gpu else None
    return {"phase_peaks": peaks, "peak_allocated_bytes": max(peaks.values()),
            "peak_reserved_bytes": reserved[0], "peak_nvml_process_bytes": process,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__}  # fmt: skip


# ---- the parent: cells, predictions, the file ----------------------------------------
def predicted(model: str, config: dict[str, Any], shape: TrainShape) -> dict[str, Any]:
    est = estimate_training(train_trace(model, config, shape), shape)
    return {"peak_allocated_bytes": est.peak_allocated_bytes,
            "peak_reserved_bytes": est.peak_reserved_bytes,
            "peak_nvml_process_bytes": est.peak_total_bytes,
            "peak": f"step {est.peak_step}, {est.peak_phase}",
            "phase_peaks": est.phase_peaks}  # fmt: skip


def _error(pred: int | None, meas: int | None) -> float | None:
    return None if not pred or not meas else round(100.0 * (pred - meas) / meas, 4)


def run_cell(model: str, shape: TrainShape) -> dict[str, Any]:
    config = _config(model)
    cell = {"config": config, "shape": asdict(shape)}
    done = subprocess.run([sys.executable, __file__, "--cell", json.dumps(cell)],
                          capture_output=True, text=True, env={**os.environ})  # fmt: skip
    entry: dict[str, Any] = {"model": model, **asdict(shape)}
    if done.returncode != 0:
        entry["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
        return entry
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    pred = predicted(model, config, shape)
    entry.update(measured=measured, predicted=pred)
    for key in ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes"):
        entry[f"error_{key.removesuffix('_bytes')}_percent"] = _error(pred[key], measured[key])
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="qwen2.5-0.5b,llama-3.2-1b")
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--optims", default="adamw")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                        / "train_plain_loop.json")  # fmt: skip
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(measure(json.loads(args.cell))))
        return 0
    cells = []
    base = TrainShape(batch=args.batch, seq=args.seq)
    for model in args.models.split(","):
        for method in args.methods.split(","):
            for optim in args.optims.split(","):
                for checkpointing in (False, True):
                    shape = replace(base, method=method, optim=optim,
                                    grad_checkpointing=checkpointing)  # fmt: skip
                    entry = run_cell(model, shape)
                    print(
                        json.dumps(
                            {k: v for k, v in entry.items() if "error" in k}, sort_keys=True
                        ),
                        model,
                        method,
                        optim,
                        checkpointing,
                    )
                    cells.append(entry)
                    write_json(args.out, {"cells": cells})  # after every cell: nothing lost
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
