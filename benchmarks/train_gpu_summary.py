"""The table of `train_gpu.sh`'s cells (*GPU* results, read anywhere): each `vramtui train`
session's peaks (allocated, reserved, NVML), the phase and step of its peak, its steady
step time and breakdown; each plain loop's peaks beside the session of the same recipe
(equal to the byte, or the difference); the ABBA step-time ratio.

    python3 benchmarks/train_gpu_summary.py WORK_FOLDER OUT.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402

# plain loop -> the session of the same recipe
PAIRS = {
    "plain-llama1b-full": "llama1b-full",
    "plain-llama1b-qlora": "llama1b-qlora",
    "plain-llama1b-lora-A1": "abba-llama1b-lora-B1",
}
ABBA = ("plain-llama1b-lora-A1", "abba-llama1b-lora-B1", "abba-llama1b-lora-B2",
        "plain-llama1b-lora-A2")  # fmt: skip


def steady_s(step_s: list[float]) -> float | None:
    """The median step time from step 2 on (step 1 creates the optimizer's states)."""
    steady = step_s[1:]
    return statistics.median(steady) if steady else None


def cell_row(name: str, saved: dict[str, Any]) -> dict[str, Any]:
    training = saved.get("training") or {}
    failure = saved.get("failure") or {}
    peak = training.get("peak") or {}
    return {
        "cell": name,
        "recipe": training.get("recipe"),
        "model": saved.get("model"),
        "status": saved.get("status"),
        "failure": f"{failure.get('kind')} in {failure.get('phase')} of step {failure.get('token')}"
        if failure
        else None,
        "peak_allocated_bytes": saved.get("peak_allocated_bytes"),
        "peak_reserved_bytes": saved.get("peak_reserved_bytes"),
        "peak_nvml_process_bytes": saved.get("peak_nvml_process_bytes"),
        "peak_phase": peak.get("phase"),
        "peak_step": peak.get("step"),
        "steady_step_s": steady_s(training.get("step_s") or []),
        "steady_tokens_per_s": training.get("steady_tokens_per_s"),
        "phase_peaks": training.get("phase_peaks"),
        "breakdown": training.get("breakdown"),
        "session": f"train_gpu/{name}.json",
    }


def read(work: Path, name: str) -> dict[str, Any] | None:
    path = work / f"{name}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def gib(value: int | None) -> str:
    return f"{value / 2**30:.3f} GiB" if value is not None else "–"


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    cells = []
    for path in sorted(work.glob("*.json")):
        if not path.stem.startswith("plain-"):
            cells.append(cell_row(path.stem, json.loads(path.read_text())))
    equal = []
    for plain_name, cell_name in PAIRS.items():
        plain, cell = read(work, plain_name), read(work, cell_name)
        if plain is None or cell is None:
            continue
        row = {"plain": plain_name, "vramtui": cell_name}
        for key in ("peak_allocated_bytes", "peak_reserved_bytes"):
            theirs, ours = plain.get(key), cell.get(key)
            diff = ours - theirs if ours is not None and theirs is not None else None
            row[key] = {"plain": theirs, "vramtui": ours, "diff": diff}
        equal.append(row)
    times = {n: read(work, n) for n in ABBA}
    abba = None
    if all(times.values()):
        plain_s = [steady_s(times[n]["step_s"]) for n in (ABBA[0], ABBA[3])]  # type: ignore[index]
        ours = [steady_s(times[n]["training"]["step_s"]) for n in ABBA[1:3]]  # type: ignore[index]
        abba = {"plain_steady_step_s": plain_s, "vramtui_steady_step_s": ours,
                "speed_ratio": statistics.mean(plain_s) / statistics.mean(ours)}  # type: ignore[arg-type]  # fmt: skip
        polled = read(work, "plain-llama1b-lora-nvml")  # the plain loop beside NVML reads
        if polled is not None:
            abba["plain_with_nvml_reads_steady_step_s"] = steady_s(polled["step_s"])
    write_json(out, {"cells": cells, "plain_equal": equal, "abba": abba})
    for c in cells:
        peaks = " ".join(
            f"{k} {gib(c[f'peak_{k}_bytes'])}" for k in ("allocated", "reserved", "nvml_process")
        )
        print(f"{c['cell']:<24} {c['status']:<10} {peaks}  peak in {c['peak_phase']} of step "
              f"{c['peak_step']}  step {c['steady_step_s']}  {c['failure'] or ''}")  # fmt: skip
    for e in equal:
        a = e["peak_allocated_bytes"]
        print(f"{e['vramtui']} vs {e['plain']}: allocated diff {a['diff']} B, reserved diff "
              f"{e['peak_reserved_bytes']['diff']} B")  # fmt: skip
    print("ABBA:", abba)


if __name__ == "__main__":
    main()
