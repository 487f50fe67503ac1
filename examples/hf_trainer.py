"""An HF `Trainer` fine-tuning a Llama-architecture model on random token ids.

A user's program as vramtui finds it: it knows nothing of vramtui. The model is built
from a Llama config with random weights (nothing downloads); transformers' `Trainer`
runs `--steps` optimizer steps, no evaluation, no checkpoints, no reporting, on the GPU
when there is one. Watch its steps and phases with

    vramtui profile --live examples/hf_trainer.py
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments


class RandomTokens(torch.utils.data.Dataset):
    """`rows` sequences of random token ids, labels = ids (the model's own loss)."""

    def __init__(self, rows: int, seq: int, vocab: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(4, vocab, (rows, seq), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=4, help="per-device micro-batch")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    args = parser.parse_args()
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        max_position_embeddings=max(args.seq, 128),
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    data = RandomTokens(args.steps * args.batch, args.seq, args.vocab)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            use_cpu=not torch.cuda.is_available(),
            bf16=torch.cuda.is_available(),
        )
        Trainer(model=model, args=training, train_dataset=data).train()


if __name__ == "__main__":
    main()
