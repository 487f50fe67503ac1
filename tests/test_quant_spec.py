"""--quant, --double-quant, --cache-bits and the TrainSpec: checked before anything runs."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from vramtui.errors import UsageError
from vramtui.runspec import quant
from vramtui.runspec.run_spec import RunSpec
from vramtui.runspec.train_spec import TrainSpec, check_train_fields, qlora_base


def test_missing_library_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quant, "installed", lambda package: package != "bitsandbytes")
    with pytest.raises(
        UsageError, match=r'--quant nf4 needs bitsandbytes: pip install -e "\.\[quant\]"'
    ):
        quant.check_quant("nf4")
    assert quant.check_quant("int8-wo").backend == "torchao"


def test_double_quant_only_for_4bit() -> None:
    with pytest.raises(UsageError, match="--double-quant applies to bitsandbytes 4-bit"):
        quant.check_quant("int8", double_quant=True)
    assert quant.quant_label("nf4", True) == "nf4+dq"
    assert quant.quant_label("int8", True) == "int8"


def test_cuda_only_methods_refused_off_cuda() -> None:
    with pytest.raises(UsageError, match="--quant fp8 runs on CUDA GPUs only"):
        quant.check_quant_device("fp8", "cpu")
    quant.check_quant_device("int8-wo", "cpu")  # torchao's int8 weight-only runs on the CPU


def test_cli_refuses_bad_quant_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "run", "--quant", "int8", "--double-quant", "--tokens", "2")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "vramtui: --double-quant applies to bitsandbytes 4-bit (nf4, fp4), not --quant int8"
    ]


def test_train_spec_round_trips_and_checks_its_fields() -> None:
    spec = TrainSpec(base=RunSpec(model="llama-3.2-1b", batch=2), method="lora", seq=256)
    assert TrainSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(UsageError, match="--grad-accum must be positive"):
        check_train_fields(TrainSpec(grad_accum=0))
    with pytest.raises(UsageError, match="unknown --optim 'adam'"):
        check_train_fields(TrainSpec(optim="adam"))
    base = qlora_base(RunSpec())
    assert (base.quant, base.double_quant, base.dtype) == ("nf4", True, "bfloat16")
