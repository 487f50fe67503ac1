"""The fine-tuning recipe applied to a built model, as a training run applies it.

Imports torch, transformers and peft: used in the tracer's child process (on the meta
device) and by the tests on real CPU tensors, so both count the same code. The recipe:
- full: every parameter trained;
- lora: peft `LoraConfig(r, lora_alpha, lora_dropout=0.0, target_modules)` on the base;
- qlora: the base's linear layers (but the output head) stored in 4-bit nf4 with
  double quantization and computing in bfloat16 (`four_bit.py` stands in for
  bitsandbytes' Linear4bit where no GPU is), `peft.prepare_model_for_kbit_training`,
  then the same LoRA.
Gradient checkpointing is transformers' own, on the base before the adapters are added
(for qlora, inside `prepare_model_for_kbit_training`).
"""

from __future__ import annotations

from typing import Any


def enable_checkpointing(model: Any) -> None:
    """transformers' activation checkpointing with its defaults (the older name before
    transformers 5.23)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable()
    else:
        model.gradient_checkpointing_enable()


def lora_targets(targets: str) -> str | list[str]:
    return targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]


def apply_recipe(
    model: Any,
    method: str,
    grad_checkpointing: bool,
    lora_r: int = 16,
    lora_alpha: int = 32,
    targets: str = "all-linear",
) -> Any:
    """The model to train: `model` itself (full) or the peft model around it."""
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=grad_checkpointing
        )
    elif grad_checkpointing:
        enable_checkpointing(model)
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=0.0,
            target_modules=lora_targets(targets),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    model.train()
    return model


def trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]
