"""The start form's fine-tuning fields without Textual: the recipe they describe and
the errors of those that do not read.

The model the recipe trains (source, batch, dtype, quantization, attention, device)
is the run the rest of the form resolves; QLoRA loads it in nf4 with double
quantization (`qlora_base`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramtui.errors import UsageError
from vramtui.runspec import ResolvedRun
from vramtui.runspec.quant import check_quant
from vramtui.runspec.train_spec import TrainSpec, check_train_fields, qlora_base
from vramtui.tui.form import labelled, place_of, whole

WORKLOADS = ("generate", "fine-tune")
TRAIN_FIELDS = ("method", "seq", "steps", "optim")
TRAIN_LABELS = {"method": "Method", "seq": "Seq", "steps": "Steps", "optim": "Optimizer"}
TRAIN_FLAGS = {f"--{field}": label for field, label in TRAIN_LABELS.items()}


@dataclass(frozen=True)
class TrainValues:
    """What the fine-tuning fields hold, as text."""

    method: str
    seq: str
    steps: str
    optim: str


@dataclass(frozen=True)
class TrainResult:
    spec: TrainSpec | None  # None while any field is wrong
    errors: dict[str, str]  # place on the form -> message


def read_train(values: TrainValues, run: ResolvedRun | None, base: TrainSpec) -> TrainResult:
    """The recipe the fields describe for the form's run (None: the run's own fields are
    wrong, and say so), every bad field named; fields the form does not show keep
    `base`'s values."""
    errors: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for field in ("seq", "steps"):
        try:
            numbers[field] = whole(getattr(values, field), TRAIN_LABELS[field])
        except UsageError as exc:
            errors[field] = str(exc)
    if run is None or errors:
        return TrainResult(None, errors)
    spec = replace(
        base,
        base=run.spec,
        method=values.method,
        optim=values.optim,
        seq=numbers["seq"],
        steps=numbers["steps"],
    )
    try:
        check_train_fields(spec)
        if spec.method == "qlora":  # its base in nf4 with double quantization
            check_quant("nf4", double_quant=True)
            spec = replace(spec, base=qlora_base(run.spec))
    except UsageError as exc:
        place = "method" if spec.method == "qlora" else _place(exc.field)
        return TrainResult(None, {place: _labelled(str(exc))})
    if run.positions is not None and spec.seq > run.positions:
        message = f"Seq {spec.seq} exceeds the model's limit of {run.positions} positions"
        return TrainResult(None, {"seq": message})
    return TrainResult(spec, {})


def _place(field: str | None) -> str:
    return field if field in TRAIN_FIELDS else place_of(field)


def _labelled(message: str) -> str:
    for flag, label in TRAIN_FLAGS.items():
        message = message.replace(flag + " ", label + " ")
    return labelled(message)
