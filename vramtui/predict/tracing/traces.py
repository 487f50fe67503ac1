"""Traces of a model's own code (tracing/child.py), asked for once and kept on disk.

Pure Python: the child process imports torch and transformers, this side only
starts it, reads its JSON and caches it under the user's cache folder (a trace
depends on the config, the run's shape and the versions of torch and
transformers, all in its key). A `Trace` is the architecture as far as the
estimator is concerned: the checkpoint's tensors in the loader's order, the
cache's layout, and what a prefill and decode steps allocate above the
weights and the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES
from vramtui.models.hf import short_reason
from vramtui.predict.quant_storage import LinearWeight

# 2: tensor names and the linear layers (quantization); 3: CUDA traces count a float16
# softmax asked in float32 as CUDA runs it (no float32 copy of the scores); 4: the
# prefill's requests in order, sdpa's output in the kernels' layout, generate's position_ids
TRACE_VERSION = 4
TIMEOUT_S = 600


class TraceError(UsageError):
    """The model's code could not be traced: the estimate says why, the run still works."""


@dataclass(frozen=True)
class KvLayer:
    row: int  # bytes of one position of this layer's K (or V), the whole batch
    window: int  # a sliding layer keeps this many positions at most; 0: every position

    def held(self, positions: int) -> int:
        return min(positions, self.window) if self.window else positions


@dataclass(frozen=True)
class StepTrace:
    cached: int  # positions in the cache after the step
    peak: int  # the most the forward had alive above what was alive before it
    kv_before: int  # the cache's bytes before it
    kv: int  # the cache's bytes after it

    @property
    def extra(self) -> int:
        """The forward's peak above the weights and the cache it leaves."""
        return self.peak - (self.kv - self.kv_before)


@dataclass(frozen=True)
class Trace:
    """One architecture traced for one run shape."""

    name: str
    model_type: str
    model_class: str
    params: int
    positions: int
    vocab: int
    tensors: tuple[int, ...]  # checkpoint tensors' bytes, in the loader's order
    buffers: tuple[int, ...]  # buffers not in a checkpoint (rotary frequencies, ...)
    layers: tuple[KvLayer, ...]
    prompt: int
    batch: int
    dtype: str
    attn: str
    backend: str
    prefill: StepTrace
    decode: tuple[StepTrace, ...]  # by cached positions, ascending
    # One position of K (or V) repeated for every query head, the whole batch: what
    # repeat_kv materialises where sdpa gets a mask (a static cache's decode); 0 where
    # every query head has its own K and V.
    query_row: int = 0
    tensor_names: tuple[str, ...] = ()  # the checkpoint tensors' names, as `tensors`
    linears: tuple[LinearWeight, ...] = ()  # what the quantizers see (quant_storage.py)
    # The prefill forward's requests in order: bytes asked (> 0) or -(i + 1), request i
    # freed; and the requests that made the cache's tensors (each layer's K, then V).
    prefill_events: tuple[int, ...] = ()
    prefill_kv: tuple[int, ...] = ()

    def named_tensors(self) -> tuple[tuple[str, int], ...]:
        """(name, bytes) of every checkpoint tensor, in the loader's order (names
        empty where the trace holds none)."""
        names = self.tensor_names or ("",) * len(self.tensors)
        return tuple(zip(names, self.tensors, strict=True))

    def weights_bytes(self, dtype: str | None = None) -> int:
        return sum(self.tensors) + sum(self.buffers)

    def kv_bytes(self, positions: int) -> int:
        """The cache's tensor bytes (unrounded) holding `positions` positions."""
        return sum(2 * layer.row * layer.held(positions) for layer in self.layers)

    def kv_bytes_per_token(self, dtype: str | None = None, batch: int | None = None) -> int:
        """Every layer's K and V for one more position, while no window is full."""
        return sum(2 * layer.row for layer in self.layers)

    def decode_extra(self, cached: int) -> int:
        """The decode forward's peak above weights and cache, at `cached` positions:
        piecewise linear through the traced steps, extended from the last two."""
        points = self.decode
        if len(points) == 1 or cached <= points[0].cached:
            return points[0].extra
        for lo, hi in zip(points, points[1:], strict=False):
            if cached <= hi.cached or hi is points[-1]:
                slope = (hi.extra - lo.extra) / (hi.cached - lo.cached)
                return round(lo.extra + slope * (cached - lo.cached))
        return points[-1].extra  # unreachable: the loop returns at the last pair


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vramtui" / "traces"


def decode_points(prompt: int, positions: int) -> list[int]:
    """Cache lengths to trace a decode step at (the estimator interpolates)."""
    points = [prompt + 1 + n for n in (0, 256, 1024, 4096, 16384)]
    return sorted({min(p, positions) for p in points})


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """torch's and transformers' versions (read from their metadata once a process)."""
    out = {}
    for package in ("torch", "transformers"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "?"
    return out


def _request(config: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    return {"config": config, **shape}


def _key(request: dict[str, Any]) -> str:
    text = json.dumps([TRACE_VERSION, _versions(), request], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


CHILD = "vramtui.predict.tracing.tracer_main"


def _run_child(request: dict[str, Any], module: str = CHILD) -> dict[str, Any]:
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"tracing took longer than {TIMEOUT_S} s"}
    if done.returncode != 0 or not done.stdout.strip():
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {"ok": False, "error": lines[-1]}
    answered: dict[str, Any] = json.loads(done.stdout)
    return answered


def answer(
    request: dict[str, Any], only_cached: bool = False, module: str = CHILD
) -> dict[str, Any] | None:
    """The answer of the child `module` for `request`: from the disk cache, or asked
    now (None when `only_cached` and nothing is cached)."""
    keyed = request if module == CHILD else {**request, "module": module}
    path = cache_dir() / f"{_key(keyed)}.json"
    if path.is_file():
        try:
            cached: dict[str, Any] = json.loads(path.read_text())
            return cached
        except (OSError, json.JSONDecodeError):
            pass  # a damaged entry is traced again
    if only_cached:
        return None
    reply = _run_child(request, module)
    if reply.get("ok"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(reply))
            tmp.replace(path)
        except OSError:
            pass  # no cache: the next estimate asks again
    return reply


def _step(data: dict[str, Any]) -> StepTrace:
    return StepTrace(data["cached"], data["peak"], data["kv_before"], data["kv"])


def _trace(name: str, positions: int, request: dict[str, Any], data: dict[str, Any]) -> Trace:
    return Trace(
        name=name,
        model_type=data["model_type"],
        model_class=data["model_class"],
        params=data["params"],
        positions=positions,
        vocab=data["vocab"],
        tensors=tuple(size for _, size in data["tensors"]),
        buffers=tuple(size for _, size in data["buffers"]),
        layers=tuple(KvLayer(layer["row"], layer["window"]) for layer in data["layers"]),
        prompt=request["prompt"],
        batch=request["batch"],
        dtype=request["dtype"],
        attn=request["attn"],
        backend=request["backend"],
        prefill=_step(data["prefill"]),
        decode=tuple(_step(step) for step in data["decode"]),
        query_row=query_row(request["config"], request["batch"], request["dtype"]),
        tensor_names=tuple(name for name, _ in data["tensors"]),
        linears=tuple(LinearWeight(**entry) for entry in data["linears"]),
        prefill_events=tuple(data["prefill_events"]),
        prefill_kv=tuple(data["prefill_kv"]),
    )


def query_row(config: dict[str, Any], batch: int, dtype: str) -> int:
    """One position of K repeated for the query heads (0 without grouped queries)."""
    text = config.get("text_config") or config
    heads = text.get("num_attention_heads") or 0
    kv_heads = text.get("num_key_value_heads") or heads
    if not heads or kv_heads >= heads:
        return 0
    head_dim: int = text.get("head_dim") or text.get("hidden_size", 0) // heads
    return batch * heads * head_dim * DTYPE_BYTES[dtype]


@lru_cache(maxsize=32)
def _trace_cached(name: str, positions: int, request_json: str) -> Trace:
    """The trace, made (or read from disk) once per process."""
    request = json.loads(request_json)
    reply = answer(request, only_cached=False)
    assert reply is not None
    if not reply.get("ok"):
        reason = short_reason(str(reply.get("error")))
        raise TraceError(f"cannot trace {name}: {reason}", field="model")
    return _trace(name, positions, request, reply)


def _is_known(request_json: str) -> bool:
    """Whether the trace is on disk already (reading it is then cheap)."""
    return (cache_dir() / f"{_key(json.loads(request_json))}.json").is_file()


def trace_model(
    name: str,
    config: dict[str, Any],
    positions: int,
    *,
    prompt: int,
    batch: int,
    dtype: str,
    attn: str,
    backend: str,
    only_cached: bool = False,
) -> Trace | None:
    """The trace of `config` for a run of this shape (None: `only_cached` and none
    cached). Raises TraceError where the model's code cannot run on meta."""
    shape = {
        "prompt": prompt,
        "batch": batch,
        "dtype": dtype,
        "attn": attn,
        "backend": "cuda" if backend == "cuda" else "cpu",
        "decode": decode_points(prompt, positions),
    }
    request = json.dumps(_request(config, shape), sort_keys=True, default=str)
    if only_cached and not _is_known(request):
        return None
    return _trace_cached(name, positions, request)
