"""`vramtui bench --quant none,int8,nf4`: the weight quantization as a grid axis, a
column in the table, the CSV and the markdown, read back by show/compare."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import CPU_ONLY

from vramtui.cli import build_parser, main
from vramtui.commands.bench import axes_from_args
from vramtui.errors import UsageError
from vramtui.report import bench_table as bench_report
from vramtui.report.bench_cells import bench_views
from vramtui.runspec import RunSpec
from vramtui.sweep import grid as bench
from vramtui.sweep.results import CellResult

TINY_LLAMA = str(Path(__file__).parent / "fixtures" / "tiny-llama.json")


def axes(**values: object) -> bench.Axes:
    return bench.Axes.of_catalogue(["opt-125m"], tokens=[20], device="cpu", **values)


def test_quant_is_an_axis_of_the_product() -> None:
    grid = axes(quant=["none", "int8", "nf4"], batch=[1, 8])
    cells = grid.cells(CPU_ONLY)
    assert [(c.spec.batch, c.spec.quant) for c in cells] == [
        (1, "none"), (1, "int8"), (1, "nf4"), (8, "none"), (8, "int8"), (8, "nf4"),
    ]  # fmt: skip
    assert len({c.key for c in cells}) == 6
    assert grid.varying() == ["batch", "quant"]
    assert "--quant none,int8,nf4" in grid.command()


def test_double_quant_goes_to_the_4bit_cells_only_and_the_command_keeps_it() -> None:
    args = "bench --models opt-125m --tokens 20 --quant none,nf4 --double-quant --device cpu"
    grid = axes_from_args(build_parser().parse_args(args.split()))
    cells = grid.cells(CPU_ONLY)
    assert [(c.spec.quant, c.spec.double_quant) for c in cells] == [
        ("none", False),
        ("nf4", True),
    ]
    again = axes_from_args(build_parser().parse_args(grid.command().split()[1:]))
    assert [c.spec for c in again.cells(CPU_ONLY)] == [c.spec for c in cells]


def test_bad_quant_axes_are_refused_before_anything_runs() -> None:
    with pytest.raises(UsageError, match="--double-quant applies to bitsandbytes 4-bit"):
        base = RunSpec(device="cpu", double_quant=True)
        bench.Axes([bench.ModelRef("opt-125m")], quant=["int8"], base=base).check_values(CPU_ONLY)
    with pytest.raises(UsageError, match="--quant fp8 runs on CUDA GPUs only"):
        axes(quant=["fp8"]).cells(CPU_ONLY)


def test_unknown_quant_on_the_command_line_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "--models", "opt-125m", "--quant", "none,int3", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "vramtui: --quant: not one of none, int8, nf4, fp4, int8-wo, int4-wo, fp8: 'int3'"
    ]


def result(cell: bench.Cell, weights: int, packed: int | None) -> CellResult:
    return CellResult(
        cell=cell, status="completed", dtype="float16", params=1000, weights_bytes=weights,
        quant_label=cell.spec.quant, weights_packed_bytes=packed,
        weights_state_bytes=10 if packed else None, weights_full_bytes=weights - (packed or 0),
        peak_allocated_bytes=weights + 100, peak_reserved_bytes=weights + 200,
        bytes_per_param=(weights + 100) / 1000, tokens_generated=20, tokens_per_s=50.0,
    )  # fmt: skip


def test_table_csv_and_markdown_carry_the_quant_column(tmp_path: Path) -> None:
    grid = axes(quant=["none", "nf4"])
    cells = grid.cells(CPU_ONLY)
    results = [result(cells[0], 2000, None), result(cells[1], 700, 500)]
    header, rows = bench_report.table_rows(results, grid.varying(), group_repeats=True)
    assert header[:4] == ("model", "tokens", "attn", "quant")
    assert [row[3] for row in rows] == ["none", "nf4"]
    markdown = bench_report.markdown_text(results, grid)
    assert "| opt-125m | 20 | sdpa | nf4 | 700 B |" in markdown
    path = tmp_path / "bench.csv"
    path.write_text(bench_report.csv_text(results))
    rows_read = list(csv.DictReader(path.open(newline="")))
    assert [r["quant"] for r in rows_read] == ["none", "nf4"]
    assert rows_read[1]["weights_packed_bytes"] == "500"
    assert rows_read[1]["weights_state_bytes"] == "10"
    views = bench_views(path)
    assert [v.spec.quant for v in views] == ["none", "nf4"]  # type: ignore[union-attr]
    assert [v.loaded.quant for v in views if v.loaded] == ["none", "nf4"]


def test_a_constant_quant_is_said_in_the_table_heading() -> None:
    grid = axes(quant=["int8"])
    cell = grid.cells(CPU_ONLY)[0]
    line = bench_report.constants_line([result(cell, 1200, 1000)], grid.varying())
    assert "weights int8" in line


@pytest.mark.engine
@pytest.mark.slow
def test_a_quant_sweep_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "bench.csv"
    code = main(
        ["bench", "--config", TINY_LLAMA, "--quant", "none,nf4", "--tokens", "3",
         "--device", "cpu", "--csv", str(csv_path), "-q"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert [(r["quant"], r["status"]) for r in rows] == [
        ("none", "completed"),
        ("nf4", "completed"),
    ]
    none, nf4 = rows
    assert none["weights_packed_bytes"] == "0" and int(nf4["weights_packed_bytes"]) > 0
    assert int(nf4["weights_bytes"]) < int(none["weights_bytes"])
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split()[:4] == ["model", "tokens", "attn", "quant"]
