"""Cost of the per-token probe calls on this GPU (microseconds a call).

Usage: python benchmarks/probe_cost.py [benchmarks/results/probe_cost.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import per_call_us as per_call  # noqa: E402
from _common import write_json  # noqa: E402

from vramtui.measure.engine.probes import CudaProbe  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="also write the result to this JSON file")
    args = parser.parse_args()
    torch.zeros(1, device="cuda")
    x = [torch.empty(1024, 1024, device="cuda") for _ in range(8)]  # some allocator state
    probe = CudaProbe(0)
    raw = probe._raw is not None
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "raw_stats_call_available": raw,
        "CudaProbe.read_us": per_call(probe.read),
        "CudaProbe.reset_peak_us": per_call(probe.reset_peak),
        "torch.cuda.memory_stats_us": per_call(torch.cuda.memory_stats),
        "memory_allocated+reserved_us": per_call(
            lambda: (torch.cuda.memory_allocated(), torch.cuda.memory_reserved())
        ),
        "check_read_matches": probe.read()[:2]
        == (torch.cuda.memory_allocated(), torch.cuda.memory_reserved()),
    }
    del x
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
