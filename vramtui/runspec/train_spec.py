"""What to fine-tune: the TrainSpec, a frozen record of every choice a training run
depends on. The model (source, dtype, attention, device, quantization, --cap) is a
RunSpec, built exactly as for generation; the rest is the training recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from vramtui.errors import UsageError
from vramtui.runspec.run_spec import RunSpec

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor")
# peft's LoraConfig as vramtui trains it unless --lora-r / --lora-targets say otherwise
LORA_R = 16
LORA_ALPHA = 32
LORA_TARGETS = "all-linear"


@dataclass(frozen=True)
class TrainSpec:
    """N training steps on random token ids: `base.batch` sequences of `seq` tokens a
    micro-batch, labels = ids, the model's own loss; forward, backward,
    optimizer.step(), zero_grad(set_to_none=True)."""

    base: RunSpec = RunSpec()
    method: str = "full"  # full | lora | qlora
    seq: int = 512
    steps: int = 3  # optimizer states exist after step 1; step 2 on is the steady state
    grad_accum: int = 1
    optim: str = "adamw"
    grad_checkpointing: bool = False
    lora_r: int = LORA_R
    lora_alpha: int = LORA_ALPHA
    lora_targets: str = LORA_TARGETS  # "all-linear" or comma-separated module names

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TrainSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown train spec fields: {', '.join(unknown)}")
        values: dict[str, Any] = dict(data)
        base = values.pop("base", {})
        if not isinstance(base, dict):
            raise UsageError("train spec field base must be a run spec")
        return cls(base=RunSpec.from_dict(base), **values)

    @property
    def label(self) -> str:
        return f"{self.base.label} {self.method}"

    @property
    def adapters(self) -> bool:
        return self.method in ("lora", "qlora")


def qlora_base(base: RunSpec) -> RunSpec:
    """QLoRA's base model: 4-bit nf4 with double quantization, bfloat16 compute."""
    return replace(base, quant="nf4", double_quant=True, dtype=base.dtype or "bfloat16")


def check_train_fields(spec: TrainSpec) -> None:
    """The recipe's fields that need nothing but themselves."""
    if spec.method not in METHODS:
        choose = ", ".join(METHODS)
        raise UsageError(f"unknown --method {spec.method!r}; choose from {choose}", field="method")
    if spec.optim not in OPTIMIZERS:
        choose = ", ".join(OPTIMIZERS)
        raise UsageError(f"unknown --optim {spec.optim!r}; choose from {choose}", field="optim")
    for name in ("seq", "steps", "grad_accum", "lora_r", "lora_alpha"):
        value = getattr(spec, name)
        if value <= 0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be positive, got {value}", field=name)
    if spec.method == "qlora" and spec.base.quant not in ("none", "nf4"):
        raise UsageError(
            f"--method qlora loads the base in nf4; drop --quant {spec.base.quant}", field="quant"
        )
