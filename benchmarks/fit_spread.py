"""How far the replayed need lies from the fragmentation model's: the spread `vramtui fit`
allows before it replays the KV cache's segments (predict/planner.py, SPREAD_SHARE).

For a grid of catalogue models (OPT's exact record and config-approximated traces),
both attentions, batch 1, 2 and 4, prompts of 8 and 512 and 1 to 8000 new tokens, every
cell is estimated both ways (the replayed need: the segments in use at once, a
ballooning cache's cached segments given back); the gap is given as a share of what the
run allocates beyond its weights. Estimator against estimator: nothing is measured on a
device.

    python benchmarks/fit_spread.py --out benchmarks/results/fit_speed/fit_spread-cpu-dev.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json  # noqa: E402

from vramtui.models.catalogue import CATALOGUE  # noqa: E402
from vramtui.predict.estimator import estimate  # noqa: E402
from vramtui.predict.planner import (  # noqa: E402  # noqa: E402
    SPREAD_FLOOR,
    SPREAD_SHARE,
    GeneratePlanner,
    Setting,
    architecture,
)

MODELS = ("opt-125m", "opt-1.3b", "opt-6.7b", "llama-3.2-1b", "qwen2.5-0.5b", "gemma-2-2b",
          "pythia-410m", "qwen3-0.6b", "phi-3-mini-4k")  # fmt: skip
TOKENS = (1, 10, 100, 500, 1000, 1500, 2000, 4000, 8000)


def cells() -> list[dict[str, Any]]:
    out = []
    for name in MODELS:
        model = CATALOGUE[name]
        positions = GeneratePlanner().positions(model)
        for attn in ("sdpa", "eager"):
            for batch in (1, 2, 4):
                for prompt in (8, 512):
                    setting = Setting(prompt_tokens=prompt, tokens=1, batch=batch, attn=attn)
                    arch, basis = architecture(model, setting, positions)
                    for tokens in (t for t in TOKENS if prompt + t <= positions):
                        kw = dict(prompt_tokens=prompt, tokens=tokens, batch=batch, attn=attn)
                        cheap = estimate(arch, replay_cache=False, **kw)  # type: ignore[arg-type]
                        replayed = estimate(arch, **kw)  # type: ignore[arg-type]
                        gap = replayed.required_bytes - cheap.required_bytes
                        beyond = cheap.peak_allocated_bytes - cheap.weights_bytes
                        out.append({**kw, "model": name, "basis": basis, "gap_bytes": gap,
                                    "balloons": cheap.cache_balloons,
                                    "beyond_weights_bytes": beyond,
                                    "share": round(gap / beyond, 4)})  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("XDG_CACHE_HOME", "/nonexistent-trace-cache")  # no cached trace
    found = cells()
    shares = [c["share"] for c in found]
    allowed = [SPREAD_SHARE * c["beyond_weights_bytes"] + SPREAD_FLOOR for c in found]
    within = all(abs(c["gap_bytes"]) <= a for c, a in zip(found, allowed, strict=True))
    result = {
        "what": __doc__.splitlines()[0],
        "cells": len(found),
        "share_min": min(shares),
        "share_max": max(shares),
        "spread_share": SPREAD_SHARE,
        "spread_floor_bytes": SPREAD_FLOOR,
        "every_gap_within_the_spread": within,
        "widest": sorted(found, key=lambda c: c["share"])[-5:],
        "narrowest": sorted(found, key=lambda c: c["share"])[:5],
    }
    write_json(args.out, result)
    lo, hi = min(shares), max(shares)
    print(f"{len(found)} cells: the replayed need lies {lo:+.2f} to {hi:+.2f} x beyond-weights "
          f"from the fragmentation model's; within the spread: {within}")  # fmt: skip
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
