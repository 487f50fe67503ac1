"""A training run made concrete: its model resolved exactly as for generation, the
recipe checked against it and the device, the dtype made concrete (bfloat16 on GPUs,
float32 on the CPU; QLoRA's base in nf4). What `vramtui train` and the app both run."""

from __future__ import annotations

from dataclasses import replace

from vramtui.errors import UsageError
from vramtui.runspec.device_choice import DeviceList
from vramtui.runspec.resolve import ResolvedRun, resolve
from vramtui.runspec.train_spec import (
    TrainSpec,
    check_train_device,
    check_train_fields,
    check_train_libraries,
    qlora_base,
    train_dtype,
)


def resolve_training(spec: TrainSpec, found: DeviceList) -> tuple[ResolvedRun, TrainSpec]:
    """(the base model's run, the recipe with that base), or a UsageError naming the field.
    The base generates nothing (one token, one prompt token, as `vramtui train` builds it):
    --seq is checked against the model's positions instead;
    the recipe's own fields and libraries are checked first (`prepare_training`)."""
    spec = replace(spec, base=replace(spec.base, tokens=1, prompt_tokens=1, prompt=None))
    resolved = resolve(spec.base, found)  # it generates nothing: a form's budget is not checked
    if resolved.positions is not None and spec.seq > resolved.positions:
        raise UsageError(
            f"--seq {spec.seq} exceeds the model's limit of {resolved.positions} positions",
            field="seq",
        )
    check_train_device(spec, resolved.backend)
    if spec.method == "qlora":  # nf4, double quantization, bfloat16 compute unless --dtype
        base = qlora_base(replace(resolved.spec, dtype=spec.base.dtype))
    else:
        base = replace(resolved.spec, dtype=train_dtype(spec.base.dtype, resolved.backend))
    return replace(resolved, spec=base, dtype=str(base.dtype)), replace(spec, base=base)


def prepare_training(spec: TrainSpec, found: DeviceList) -> tuple[ResolvedRun, TrainSpec]:
    """Every check before anything runs: the recipe's fields, a quantized base only for
    QLoRA, the libraries the recipe needs; then `resolve_training`."""
    check_train_fields(spec)
    if spec.base.quant != "none" and spec.method != "qlora":
        raise UsageError(
            f"--quant {spec.base.quant} quantizes a frozen base: use --method qlora "
            f"(--method {spec.method} trains the weights as loaded)",
            field="quant",
        )
    check_train_libraries(spec)
    return resolve_training(spec, found)
