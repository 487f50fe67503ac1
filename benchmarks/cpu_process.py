"""What the Python process itself holds on the CPU: the figure a CPU estimate adds.

On the CPU the engine's figure is its resident memory (RSS): the tensors plus the
Python process with torch and transformers imported. This runs the 118 kB tiny-opt
test model on the CPU in fresh engines, `--runs` times, and takes each one's RSS
right after the model is built, less its weights (predict/calibration.py's
CPU_PROCESS_BYTES and CPU_PROCESS_BYTES_CUDA_TORCH). It records torch's version and
whether that torch is a CUDA build. Run it with each Python whose torch you want
measured.

    python benchmarks/cpu_process.py [--runs 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import write_json  # noqa: E402

from vramtui.measure.recorder import Recorder  # noqa: E402
from vramtui.measure.summary_format import summary as summary_of  # noqa: E402
from vramtui.predict.cpu_process import torch_is_cuda_build  # noqa: E402
from vramtui.runspec import DeviceChoice, DeviceList, RunSpec, resolve  # noqa: E402

VERSIONS = ("torch", "transformers", "python", "device_name")


def one_run() -> dict[str, object]:
    config = ROOT / "tests" / "fixtures" / "tiny-opt.json"
    spec = RunSpec(model="tiny-opt", source="config", path=str(config), tokens=2, device="cpu")
    run = resolve(spec, DeviceList((DeviceChoice("cpu", "CPU"),)))
    session = Recorder.for_run(run, use_nvml=False).run()
    view = session.snapshot()
    after_load = next(s.allocated for s in view.samples if s.phase == "load")
    weights = summary_of(view)["weights_bytes"]
    return {"rss_after_load": after_load, "weights": weights, "process": after_load - weights,
            "environment": {k: getattr(view.environment, k) for k in VERSIONS}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    result = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "torch_cuda_build": torch_is_cuda_build(),
        "runs": runs,
        "process_bytes": [r["process"] for r in runs],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
