"""The fine-tuning table's runner and writer (benchmarks/train_table.py) and the cap
checks' lanes (benchmarks/cap_lanes.py), on recorded files: no GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import benchmark_script

table = benchmark_script("train_table")
lanes = benchmark_script("cap_lanes")


def _session(step_s: list[float], imports_s: float, build_s: float) -> dict[str, Any]:
    return {
        "status": "completed",
        "peak_allocated_bytes": 5_050_000_000,
        "peak_reserved_bytes": 6_350_000_000,
        "peak_nvml_process_bytes": 7_130_000_000,
        "timings": {"startup": {"imports_done_s": imports_s, "build_s": build_s}},
        "training": {"peak": {"step": 2, "phase": "backward"}, "step_s": step_s},
        "environment": {"device_name": "GPU", "torch": "t", "transformers": "x", "python": "p"},
    }


def _write(folder: Path, runs: list[dict[str, Any]], sessions: dict[str, Any]) -> None:
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    for name, saved in sessions.items():
        (folder / f"{name}.json").write_text(json.dumps(saved))


def test_a_step_time_is_marked_shared_only_where_another_cells_steps_overlapped(
    tmp_path: Path,
) -> None:
    """A cell's steps hold the GPU from the end of its build to its end: two cells whose
    imports overlapped but whose steps did not are both alone; a third whose steps ran
    inside another's is shared, and so is that other one; a cell not run says why."""
    a, b, c = "qwen2.5-0.5b-full-nogc-512", "qwen2.5-0.5b-lora-nogc-512", "opt-1.3b-lora-gc-512"
    runs = [
        {"cell": a, "start": 0.0, "end": 20.0, "rc": 0, "predicted_total_bytes": 7},
        {"cell": b, "start": 5.0, "end": 40.0, "rc": 0, "predicted_total_bytes": 4},
        {"cell": c, "start": 30.0, "end": 60.0, "rc": 0, "predicted_total_bytes": 4},
        {"cell": "mistral-7b-v0.3-full-nogc-2048", "not_run": "out of time",
         "predicted_total_bytes": 82_000_000_000},
    ]  # fmt: skip
    sessions = {
        a: _session([0.8, 0.12, 0.10], imports_s=14.0, build_s=2.0),  # steps 16-20
        b: _session([0.9, 0.20, 0.30], imports_s=15.0, build_s=3.0),  # steps 23-40
        c: _session([0.9, 0.30, 0.50], imports_s=3.0, build_s=1.0),  # steps 34-60
    }
    _write(tmp_path, runs, sessions)
    rows = {r["cell"]: r for r in table.rows(tmp_path)}
    assert (rows[a]["shared"], rows[b]["shared"], rows[c]["shared"]) == (False, True, True)
    assert rows[a]["steady_step_s"] == 0.11  # the median of steps 2 on
    assert rows["mistral-7b-v0.3-full-nogc-2048"]["status"] == "out of time"
    runs[0]["beside"] = "cap checks"  # run beside other work: shared whatever the cells
    _write(tmp_path, runs, sessions)
    assert table.rows(tmp_path)[0]["shared"] is True


def test_the_table_lists_every_cell_with_its_peak_and_status(tmp_path: Path) -> None:
    name = "llama-3.2-1b-qlora-gc-2048"
    runs = [{"cell": name, "start": 0.0, "end": 9.0, "rc": 0, "predicted_total_bytes": 1}]
    _write(tmp_path, runs, {name: _session([1.0, 0.31, 0.33], 4.0, 1.0)})
    out = tmp_path / "t"
    table.table(type("Args", (), {"folder": tmp_path, "out": str(out)})())
    line = [x for x in Path(f"{out}.md").read_text().splitlines() if x.startswith("| llama")]
    assert line == [
        "| llama-3.2-1b | qlora | on | 2048 | adamw | 5.05 | 6.35 | 7.13 | step 2, backward "
        "| 0.320 s | completed |"
    ]


def test_the_cells_cover_the_grid_and_name_their_flags() -> None:
    cells = table.cells()
    assert len(cells) == 5 * 3 * 2 * 2 + len(table.EIGHT_BIT)
    assert len({c.name for c in cells}) == len(cells)
    eight = next(c for c in cells if c.optim == "adamw-8bit" and c.ckpt)
    assert "--grad-checkpointing" in eight.flags() and "adamw-8bit" in eight.flags()


def test_the_lanes_read_each_cells_cap_from_the_scripts() -> None:
    gib = 2**30
    assert lanes.caps("fit_check.sh")[:2] == [12 * gib, 12 * gib]
    assert set(lanes.caps("fit_train_check.sh")) == {12 * gib, 16 * gib, 24 * gib}
