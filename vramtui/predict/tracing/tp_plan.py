"""Each rank's share of a model under a tp_plan, computed on the meta device.

A child process (`python -m vramtui.predict.tracing.tp_plan`, a request as JSON on stdin,
the answer as JSON on stdout), like place.py, so the parent stays pure Python:
predict/tp_shard.py starts it and caches the answer. The request: {"config": {...},
"dtype": "float16", "tp": N}. The answer: predict.tp_shard.TpShares as a dict, or
{"ok": false, "error": ...} (a model without a tensor parallel plan).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from vramtui.errors import UsageError
from vramtui.models.hf import meta_model, transformers_config
from vramtui.predict.tp_shard import no_plan, tp_shares
from vramtui.predict.tracing.child_io import answer_stdin


def shares(request: dict[str, Any]) -> dict[str, Any]:
    import transformers

    config = transformers_config(request["config"])
    meta = meta_model(config, getattr(torch, request["dtype"]))
    if not getattr(meta, "_tp_plan", None):
        raise UsageError(no_plan(config.model_type, transformers.__version__))
    return asdict(tp_shares(meta, int(request["tp"])))


def main() -> int:
    return answer_stdin(shares)


if __name__ == "__main__":
    raise SystemExit(main())
