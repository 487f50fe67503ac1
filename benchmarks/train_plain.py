"""The recipe `vramtui train` runs, written as a plain PyTorch/peft loop, for checking
that the engine adds nothing (*GPU*).

The model is loaded by the same loader as the engine's (random weights through
transformers' from_pretrained, QLoRA's base in nf4), then trained with the libraries'
own calls only: no hooks, no samples. Prints one JSON object (and writes it with
--json): torch's peak allocated and reserved over the whole process (load included, as
`vramtui train`'s peaks are), and each step's seconds (synchronised).

    python3 benchmarks/train_plain.py --model llama-3.2-1b --method lora --seq 512 \
        --batch 4 --steps 3 --json plain.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _common import write_json  # noqa: E402

from vramtui.measure.engine.train_base import base_model  # noqa: E402
from vramtui.measure.engine.train_parts import make_optimizer  # noqa: E402
from vramtui.runspec import RunSpec  # noqa: E402
from vramtui.runspec.train_spec import TrainSpec, qlora_base  # noqa: E402


def recipe(args: argparse.Namespace) -> TrainSpec:
    source = {"source": "config", "path": args.config} if args.config else {}
    dtype = "bfloat16" if args.device.startswith("cuda") or args.method == "qlora" else "float32"
    base = RunSpec(model=args.model, batch=args.batch, dtype=dtype, device=args.device, **source)
    if args.method == "qlora":
        base = qlora_base(base)
    return TrainSpec(
        base=base, method=args.method, seq=args.seq, steps=args.steps,
        grad_accum=args.grad_accum, optim=args.optim, grad_checkpointing=args.grad_checkpointing,
    )  # fmt: skip


def trainable(model: Any, spec: TrainSpec) -> Any:
    """transformers' checkpointing, peft's kbit preparation and LoRA, as users call them."""
    model.train()
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.grad_checkpointing
        )
    elif spec.grad_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    if spec.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")  # fmt: skip
    return get_peft_model(model, config)


# vramtui's parent process reads NVML for the engine's PID at --nvml-hz (200 a second by
# default), outside the engine; --nvml-hz here runs the same reads from a child process
# for this loop's PID, so that an ABBA can tell the poller's share of a step's time.
POLLER = """
import sys, time
from vramtui.measure import nvml
pid, hz = int(sys.argv[1]), float(sys.argv[2])
watch = nvml.DeviceWatch(nvml.gpus()[0], pid, None)
watch.read()
print("reading", flush=True)
while True:
    watch.read()
    time.sleep(1.0 / hz)
"""


def nvml_poller(hz: float) -> subprocess.Popen[bytes] | None:
    """A child reading NVML for this process at `hz`, as vramtui's parent does; back once
    it has read once (it says so), or the run ends here saying it could not."""
    if hz <= 0:
        return None
    argv = [sys.executable, "-c", POLLER, str(os.getpid()), str(hz)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert child.stdout is not None
    if child.stdout.readline().strip() != b"reading":
        raise SystemExit(f"train_plain: the NVML poller failed (exit {child.wait()})")
    return child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.2-1b")
    parser.add_argument("--method", choices=("full", "lora", "qlora"), default="full")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--optim", default="adamw")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--device", default="cuda:0", help="cuda:N (cpu: a smoke test, no peaks)")
    parser.add_argument("--config", help="a config.json instead of the catalogue's --model")
    parser.add_argument(
        "--nvml-hz", type=float, default=0.0,
        help="read NVML for this process this often from a child, as vramtui's parent does",
    )  # fmt: skip
    args = parser.parse_args()
    spec = recipe(args)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    built = base_model(spec.base, device, str(spec.base.dtype))
    model = trainable(built.model, spec)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(spec.optim, params)  # the library's constructor, defaults
    generator = torch.Generator(device="cpu").manual_seed(spec.base.seed)
    vocab = int(built.model.config.vocab_size)
    shape = (spec.base.batch, spec.seq)
    batches = [torch.randint(4, vocab, shape, generator=generator)
               for _ in range(spec.steps * spec.grad_accum)]  # fmt: skip
    step_s = []
    poller = nvml_poller(args.nvml_hz)
    for step in range(spec.steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for micro in range(spec.grad_accum):
            ids = batches[step * spec.grad_accum + micro].to(device)
            loss = model(input_ids=ids, labels=ids).loss / spec.grad_accum
            loss.backward()
            float(loss.detach())
            del loss, ids
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        step_s.append(time.perf_counter() - t)
    polled = poller is not None and poller.poll() is None  # still reading at the end
    if poller is not None:
        poller.kill()
    result = {
        "recipe": spec.recipe(),
        "model": spec.base.model,
        "device": str(device),
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(device) if cuda else None,
        "step_s": step_s,
        "tokens_per_step": spec.tokens_per_step,
        "nvml_hz": args.nvml_hz,
        "nvml_poller_ran": polled,
    }
    if args.json:
        write_json(args.json, result)
    print(result)


if __name__ == "__main__":
    main()
