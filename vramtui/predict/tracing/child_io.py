"""The request/answer loop of the predictor's child processes (place.py, tp_plan.py):
a request as JSON on stdin, the answer as JSON on stdout, a failure as one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from vramtui.errors import UsageError


def answer_stdin(compute: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Read the request, write {"ok": true, **answer} or {"ok": false, "error": ...}."""
    request = json.loads(sys.stdin.read())
    try:
        result: dict[str, Any] = {"ok": True, **compute(request)}
    except UsageError as exc:
        result = {"ok": False, "error": str(exc)}
    except (NotImplementedError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        result = {"ok": False, "error": f"{type(exc).__name__}: {text[0] if text else ''}"}
    json.dump(result, sys.stdout)
    return 0
