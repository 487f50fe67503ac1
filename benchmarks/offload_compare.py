"""Each device of a placed run, predicted (`vramtui estimate --json`) against measured
(`vramtui run --json`): one line a device, and the whole as JSON.

    python3 benchmarks/offload_compare.py ESTIMATE.json RUN.json OUT.json

Run by benchmarks/offload_gpu.sh on the GPU box; the figures it writes are committed
under benchmarks/results/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import gpu_environment, write_json  # noqa: E402


def _gb(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e9:.3f} GB"


def compare(estimate: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    predicted = {d["device"]: d for d in estimate["devices"]}
    rows = []
    for measured in run.get("devices", []):
        pred = predicted.get(measured["device"], {})
        rows.append(
            {
                "device": measured["device"],
                "layers_predicted": pred.get("layers"),
                "layers_measured": measured["layers"],
                "weights_predicted": pred.get("weights_bytes"),
                "weights_measured": measured["weights_bytes"],
                "peak_allocated_predicted": pred.get("peak_allocated_bytes"),
                "peak_allocated_measured": measured["peak_allocated_bytes"],
                "peak_reserved_measured": measured["peak_reserved_bytes"],
            }
        )
    return rows


def main() -> int:
    estimate = json.loads(Path(sys.argv[1]).read_text())
    run = json.loads(Path(sys.argv[2]).read_text())
    rows = compare(estimate, run)
    print(f"run: {run['status']}, {run['tokens_generated']}/{run['tokens_requested']} tokens, "
          f"{run['tokens_per_s'] or 0:.2f} tok/s; estimate runs out first: "
          f"{estimate.get('runs_out_first')}")  # fmt: skip
    for r in rows:
        same = "same layers" if r["layers_predicted"] == r["layers_measured"] else "OTHER LAYERS"
        print(f"{r['device']}: {same}; weights {_gb(r['weights_measured'])} measured, "
              f"{_gb(r['weights_predicted'])} predicted; peak {_gb(r['peak_allocated_measured'])} "
              f"measured, {_gb(r['peak_allocated_predicted'])} predicted")  # fmt: skip
    data = {
        # the run's machine, as its engine recorded it (the estimate needs no GPU and may
        # have been made elsewhere: its versions are under "estimate_environment")
        "environment": run.get("environment", {}),
        "estimate_environment": gpu_environment(),
        "spec": run["spec"],
        "devices": rows,
        "run_status": run["status"],
        "tokens_per_s": run["tokens_per_s"],
        "estimate_runs_out_first": estimate.get("runs_out_first"),
        "estimate_max_memory_for_generation": estimate.get("max_memory_for_generation"),
    }
    write_json(Path(sys.argv[3]), data)
    return 0 if run["status"] == "completed" and rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
