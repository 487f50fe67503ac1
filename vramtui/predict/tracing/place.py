"""Place a model across devices as from_pretrained would, on the meta device.

A child process (`python -m vramtui.predict.tracing.place`, a request as JSON on
stdin, the placement as JSON on stdout), like tracing/child.py, so the estimator
stays pure Python: predict/placed.py starts it and caches the answer. The request:
{"config": {...}, "dtype": "float16", "device_map": "auto", "max_memory": {"0": bytes,
"cpu": bytes}}. The answer: vramtui.models.layer_placement.Placement.to_dict(), plus the
bytes of each decoder layer's weights.
"""

from __future__ import annotations

from typing import Any

import torch

from vramtui.models.hf import meta_model, transformers_config
from vramtui.models.layer_placement import place
from vramtui.predict.tracing.child_io import answer_stdin

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _max_memory(data: dict[str, int]) -> dict[int | str, int]:
    return {int(k) if k.isdigit() else k: int(v) for k, v in data.items()}


def placement(request: dict[str, Any]) -> dict[str, Any]:
    config = transformers_config(request["config"])
    model = meta_model(config, DTYPES[request["dtype"]])
    placed = place(model, request["device_map"], _max_memory(request["max_memory"]))
    return placed.to_dict()


def main() -> int:
    return answer_stdin(placement)


if __name__ == "__main__":
    raise SystemExit(main())
