"""Place a model across devices as from_pretrained would, on the meta device.

A child process (`python -m vramtui.predict.tracing.place`, a request as JSON on
stdin, the placement as JSON on stdout), like tracing/child.py, so the estimator
stays pure Python: predict/placed.py starts it and caches the answer. The request:
{"config": {...}, "dtype": "float16", "device_map": "auto", "max_memory": {"0": bytes,
"cpu": bytes}}. The answer: vramtui.models.layer_placement.Placement.to_dict(), plus the
bytes of each decoder layer's weights.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from vramtui.errors import UsageError
from vramtui.models.hf import meta_model, transformers_config
from vramtui.models.layer_placement import place

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _max_memory(data: dict[str, int]) -> dict[int | str, int]:
    return {int(k) if k.isdigit() else k: int(v) for k, v in data.items()}


def placement(request: dict[str, Any]) -> dict[str, Any]:
    config = transformers_config(request["config"])
    model = meta_model(config, DTYPES[request["dtype"]])
    placed = place(model, request["device_map"], _max_memory(request["max_memory"]))
    return placed.to_dict()


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        result: dict[str, Any] = {"ok": True, **placement(request)}
    except UsageError as exc:
        result = {"ok": False, "error": str(exc)}
    except (NotImplementedError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        result = {"ok": False, "error": f"{type(exc).__name__}: {text[0] if text else ''}"}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
