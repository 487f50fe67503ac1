"""benchmarks/quant_table.py: every sweep of every part is a bench command that plans on
an H100 (checked here, on the CPU, before a GPU call is spent on it)."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import WITH_GPU

from vramtui.cli import build_parser
from vramtui.commands.bench import axes_from_args

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quant_table.py"
sys.path.insert(0, str(SCRIPT.parent))


def test_every_part_plans_on_a_gpu(tmp_path: Path) -> None:
    import quant_table

    planned = {}
    for sweeps in quant_table.PARTS.values():
        for sweep in sweeps:
            command = sweep.command(tmp_path)
            assert command[1:4] == ["-m", "vramtui", "bench"]
            cells, left_out = axes_from_args(build_parser().parse_args(command[3:])).plan(WITH_GPU)
            assert not left_out, left_out
            planned[sweep.name] = [(c.spec.model, c.spec.quant, c.spec.tokens) for c in cells]
    assert len(planned["short"]) == 6 * 3
    assert len(planned["methods"]) == 7  # every --quant, CUDA-only ones included
    assert {q for _, q, _ in planned["short"]} == {"none", "int8", "nf4"}
    assert {t for _, _, t in planned["long-opt"] + planned["long-llama"]} == {2000}
    kv = quant_table.PARTS["kv"]
    assert [s.cache for s in kv] == ["dynamic", "quantized"]
    assert "mixtral-8x7b" in quant_table.LEFT_OUT
