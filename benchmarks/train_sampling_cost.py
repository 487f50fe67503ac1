"""What sampling a training step costs the host, piece by piece, on the CPU (*CPU*).

A LoRA step on a GPU is bound by the host when its kernels are small (llama-3.2-1b at
micro-batch 4 x 512 tokens): every microsecond of Python the engine adds to a step is
added to its time. This measures each piece the engine runs, in microseconds a call,
with the model's tensor counts of a tiny Llama (2 layers) and of a Llama shaped like
llama-3.2-1b (16 layers, every linear layer with LoRA adapters; hidden size 64, since
the host cost follows the number of tensors, not their size):

- a sample inside a phase (a stub probe: its reading, the event's encoding, held for
  the phase's one write); CudaProbe.read itself is in probe_cost (GPU);
- one saved-tensor pack (the bytes saved for backward), and how many a step makes;
- counting a step's gradients, the optimizer's states, and SavedBytes' setup.

The engine runs the counting in step 1 only; the steps after it pay the samples alone.

    python benchmarks/train_sampling_cost.py \
        --json benchmarks/results/train_sampling_cost-cpu-dev.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _common import per_call_us, write_json  # noqa: E402

from vramtui.measure.engine.train_parts import (  # noqa: E402
    SavedBytes,
    decoder_layers,
    gradient_bytes,
    optimizer_state_bytes,
)
from vramtui.measure.engine.train_run import StepRecord, TrainEngine  # noqa: E402
from vramtui.runspec.train_spec import TrainSpec  # noqa: E402


class StubProbe:
    source = "stub"

    def read(self) -> tuple[int, int, int]:
        return 2_500_000_000, 3_000_000_000, 2_600_000_000

    def reset_peak(self) -> None:
        return None


def lora_llama(layers: int) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256,
    )  # fmt: skip
    torch.manual_seed(0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    return get_peft_model(LlamaForCausalLM(config), lora)


def sample_us() -> float:
    """A sample inside a phase: the probe read, the event encoded and held."""
    engine = TrainEngine(TrainSpec(), lambda line: None)
    engine.probe = StubProbe()
    engine.phase = "forward"
    engine._record = StepRecord(2, 0.0)

    def one() -> None:
        engine.sample_here()
        if len(engine._held) > 64:
            engine._held.clear()

    return per_call_us(one, 20000)


def model_costs(layers: int) -> dict[str, Any]:
    model = lora_llama(layers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params)
    ids = torch.randint(4, 256, (1, 8))
    saved = SavedBytes(model)
    calls = [0]
    seconds = [0.0]
    pack = saved._pack

    def timed_pack(t: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = pack(t)
        seconds[0] += time.perf_counter() - start
        calls[0] += 1
        return out

    saved.hooks()  # resets the count
    with torch.autograd.graph.saved_tensors_hooks(timed_pack, saved._unpack):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return {
        "decoder_layers": len(decoder_layers(model)),
        "trainable_tensors": len(params),
        "parameters": sum(1 for _ in model.parameters()),
        "saved_tensors_a_step": calls[0],
        "pack_us": seconds[0] / calls[0] * 1e6,
        "gradient_bytes_us": per_call_us(lambda: gradient_bytes(params), 200),
        "optimizer_state_bytes_us": per_call_us(lambda: optimizer_state_bytes(optimizer), 200),
        "saved_bytes_setup_us": per_call_us(lambda: SavedBytes(model), 200),
        "samples_a_step": 2 * len(decoder_layers(model)) + 2 * 4 + 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"device": "cpu", "sample_in_phase_us": sample_us()}
    for name, layers in (("tiny-llama-2-layers", 2), ("llama-1b-shaped-16-layers", 16)):
        costs = model_costs(layers)
        counting = (
            costs["saved_tensors_a_step"] * costs["pack_us"] + costs["gradient_bytes_us"]
            + costs["optimizer_state_bytes_us"] + costs["saved_bytes_setup_us"]
        )  # fmt: skip
        costs["counting_a_step_us"] = counting  # step 1 only, now
        costs["samples_a_step_us"] = costs["samples_a_step"] * result["sample_in_phase_us"]
        result[name] = costs
    if args.json:
        write_json(args.json, result)
    print(result)


if __name__ == "__main__":
    main()
