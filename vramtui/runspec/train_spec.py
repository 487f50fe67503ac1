"""What to fine-tune: the TrainSpec, a frozen record of every choice a training run
depends on. The model (source, dtype, attention, device, quantization, --cap) is a
RunSpec, built exactly as for generation; the rest is the training recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from vramtui.errors import UsageError
from vramtui.runspec.quant import installed
from vramtui.runspec.run_spec import RunSpec, known_values

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor")
# peft's LoraConfig as vramtui trains it unless --lora-r / --lora-targets say otherwise
LORA_R = 16
LORA_ALPHA = 32
LORA_TARGETS = "all-linear"
EXTRA = "train"  # pip install -e ".[train]"
# the libraries each choice needs beyond torch and transformers
_METHOD_NEEDS = {"lora": ("peft",), "qlora": ("peft", "bitsandbytes")}
_OPTIM_NEEDS = {"adamw-8bit": ("bitsandbytes",), "paged-adamw-8bit": ("bitsandbytes",)}
# The phases of a training step, in order (samples and per-phase peaks are marked by them)
TRAIN_PHASES = ("forward", "backward", "optimizer", "zero_grad")


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
        values = known_values(cls, data, "train spec")
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

    @property
    def model(self) -> str:
        return self.base.model

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step trains on: micro-batch x sequence x accumulation."""
        return self.base.batch * self.seq * self.grad_accum

    @property
    def targets(self) -> str | list[str]:
        """peft's target_modules: "all-linear", or the module names listed."""
        if self.lora_targets == LORA_TARGETS:
            return LORA_TARGETS
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def recipe(self) -> str:
        """The recipe in one line, as the summary states it."""
        parts = [self.method, f"seq {self.seq}", f"micro-batch {self.base.batch}"]
        if self.grad_accum > 1:
            parts.append(f"grad-accum {self.grad_accum}")
        parts.append(f"optim {self.optim}")
        parts.append("grad checkpointing " + ("on" if self.grad_checkpointing else "off"))
        if self.adapters:
            parts.append(f"LoRA r={self.lora_r} alpha={self.lora_alpha} on {self.lora_targets}")
        return ", ".join(parts)


# What an engine process is handed: a generation's spec, or a training run's
EngineSpec = RunSpec | TrainSpec


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
    if not spec.lora_targets.strip(",").strip():
        raise UsageError("--lora-targets names no module", field="lora_targets")
    if spec.method == "qlora" and spec.base.quant not in ("none", "nf4"):
        raise UsageError(
            f"--method qlora loads the base in nf4; drop --quant {spec.base.quant}", field="quant"
        )


def check_train_libraries(spec: TrainSpec) -> None:
    """peft for adapters, bitsandbytes for QLoRA's base and the 8-bit optimizers: one
    line naming the extra that installs them, before anything runs."""
    wanted = [(f"--method {spec.method}", p) for p in _METHOD_NEEDS.get(spec.method, ())]
    wanted += [(f"--optim {spec.optim}", p) for p in _OPTIM_NEEDS.get(spec.optim, ())]
    for flag, package in wanted:
        if not installed(package):
            field = flag.split()[0].removeprefix("--")
            raise UsageError(f'{flag} needs {package}: pip install -e ".[{EXTRA}]"', field=field)


def check_train_device(spec: TrainSpec, backend: str) -> None:
    """Choices whose kernels need CUDA: the paged optimizer (CUDA managed memory)."""
    if spec.optim == "paged-adamw-8bit" and backend != "cuda":
        raise UsageError(
            f"--optim paged-adamw-8bit pages its states through CUDA managed memory; this run "
            f"is on {backend}",
            field="optim",
        )


def train_dtype(dtype: str | None, backend: str) -> str:
    """Training's default dtype: bfloat16 on GPUs, float32 on the CPU."""
    if dtype is None:
        return "float32" if backend == "cpu" else "bfloat16"
    return dtype
