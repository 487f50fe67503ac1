"""The engine process: build the model, generate, and report every step.

Run as `python -m vramtui.engine.child --events-fd N` with the RunSpec as one
JSON line on stdin. Events go out as JSON lines on fd N (see vramtui.events).
stdin stays open: when it closes (the parent died) the engine exits at once.

Test hooks (environment variables, read once at start):
  VRAMTUI_TEST_OOM_AT_TOKEN=k    raise torch.OutOfMemoryError inside step k
  VRAMTUI_TEST_CRASH_AT_TOKEN=k  kill the engine with SIGKILL inside step k
  VRAMTUI_TEST_STEP_SLEEP=s      sleep s seconds in every step (slow runs)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from vramtui import events as ev
from vramtui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OOM, EXIT_USAGE, UsageError
from vramtui.spec import RunSpec, resolve_dtype

clock = time.monotonic


def _watch_parent() -> None:
    """Exit as soon as the parent's end of stdin closes (parent killed, SSH gone)."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def resolve_device(name: str) -> Any:
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    available = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if cuda else []
    available += (["mps"] if mps else []) + ["cpu"]
    if name == "auto":
        return torch.device("cuda:0" if cuda else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; devices here: {', '.join(available)}") from None
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda:0")
    if str(device) not in available and not (device.type == "mps" and "mps" in available):
        raise UsageError(f"no device {name!r} here; devices here: {', '.join(available)}")
    return device


def _device_facts(device: Any) -> tuple[str, str | None, int | None]:
    import platform

    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        uuid = getattr(props, "uuid", None)
        return props.name, str(uuid) if uuid is not None else None, int(props.total_memory)
    if device.type == "mps":
        return "Apple MPS", None, None
    import psutil

    return (
        platform.processor() or platform.machine() or "CPU",
        None,
        int(psutil.virtual_memory().total),
    )


def cache_bytes(cache: Any) -> int | None:
    """Bytes held by a transformers cache object (DynamicCache and relatives)."""
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    total = 0
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if t is not None and hasattr(t, "element_size"):
                    total += t.numel() * t.element_size()
        return total
    for name in ("key_cache", "value_cache"):
        for t in getattr(cache, name, None) or []:
            if hasattr(t, "element_size"):
                total += t.numel() * t.element_size()
    return total


_TRIED = re.compile(r"Tried to allocate ([0-9.]+) ([KMGT]i?B)")
_SCALE = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def requested_bytes(message: str) -> int | None:
    match = _TRIED.search(message)
    if not match:
        return None
    return int(float(match.group(1)) * _SCALE.get(match.group(2), 1))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


class Engine:
    def __init__(self, spec: RunSpec, write: Callable[[str], None]) -> None:
        self.spec = spec
        self._write = write
        self.phase = "start"
        self.token: int | None = None
        self.probe: Any = None

    def emit(self, event: ev.Event) -> None:
        self._write(ev.encode(event) + "\n")

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.emit(ev.Phase(phase, clock()))

    def sample(self, token: int | None, phase: str, kv: int | None = None) -> int | None:
        allocated, reserved, peak = self.probe.read()
        self.emit(ev.Sample(token, clock(), phase, allocated, reserved, peak, kv))
        self.probe.reset_peak()
        return peak

    def run(self) -> int:
        import torch

        from vramtui.engine.probes import make_probe

        spec = self.spec
        self.enter("start")
        device = resolve_device(spec.device)
        backend = device.type
        if backend == "cuda":
            torch.cuda.set_device(device)
        dtype = resolve_dtype(spec.dtype, backend)
        self.probe = make_probe(backend, device.index or 0)
        import transformers

        from vramtui.engine.model import configure_backends

        backends = configure_backends(spec, device)
        name, uuid, total = _device_facts(device)
        self.emit(
            ev.Hello(
                pid=os.getpid(),
                device=str(device),
                backend=backend,
                device_name=name,
                device_uuid=uuid,
                total_memory=total,
                memory_source=self.probe.source,
                versions={
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "cuda_runtime": str(torch.version.cuda or ""),
                    "python": sys.version.split()[0],
                    **backends,
                },
            )
        )
        from vramtui.engine.model import build, generate_kwargs, random_prompt

        self.enter("load")
        self.probe.reset_peak()
        t_load = clock()
        built = build(spec, device, dtype)
        model = built.model
        load_s = clock() - t_load
        running_max = self.sample(None, "load") or 0

        config = model.config
        positions = getattr(config, "max_position_embeddings", None)
        layers = getattr(config, "num_hidden_layers", None)
        hidden = getattr(config, "hidden_size", None)
        heads = getattr(config, "num_attention_heads", None)
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or (
            hidden // heads if hidden and heads else None
        )

        if spec.prompt:
            ids = built.tokenizer(spec.prompt, return_tensors="pt").input_ids
            ids = ids.repeat(spec.batch, 1)
        else:
            ids = random_prompt(spec, config)
        prompt_tokens = int(ids.shape[1])
        if positions and prompt_tokens + spec.tokens > positions:
            raise UsageError(
                f"prompt ({prompt_tokens}) + new tokens ({spec.tokens}) exceeds the model's "
                f"limit of {positions} positions"
            )
        ids = ids.to(device)
        mask = torch.ones_like(ids)
        self.emit(
            ev.Loaded(
                weights_bytes=built.weights_bytes,
                params=built.params,
                dtype=dtype,
                positions=positions,
                layers=layers,
                hidden=hidden,
                kv_heads=kv_heads,
                head_dim=head_dim,
                prompt_tokens=prompt_tokens,
                load_s=load_s,
                model_type=str(getattr(config, "model_type", "")),
            )
        )

        from transformers import LogitsProcessor, LogitsProcessorList

        engine = self
        holder: dict[str, Any] = {}
        oom_at = _env_int("VRAMTUI_TEST_OOM_AT_TOKEN")
        crash_at = _env_int("VRAMTUI_TEST_CRASH_AT_TOKEN")
        sleep_s = float(os.environ.get("VRAMTUI_TEST_STEP_SLEEP") or 0)
        times: list[float] = []

        def keep_cache(module: Any, args: Any, output: Any) -> None:
            holder["cache"] = getattr(output, "past_key_values", None)

        class StepSampler(LogitsProcessor):
            """Called once per generated token, right after that step's forward."""

            def __init__(self) -> None:
                self.token = 0

            def __call__(self, input_ids: Any, scores: Any) -> Any:
                i = self.token  # engine.token == i: this step is the one in progress
                if sleep_s:
                    time.sleep(sleep_s)
                if i == oom_at:
                    raise torch.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 2.00 GiB (raised by the "
                        "VRAMTUI_TEST_OOM_AT_TOKEN test hook)"
                    )
                if i == crash_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                nonlocal running_max
                peak = engine.sample(i, "decode", cache_bytes(holder.get("cache")))
                if peak is not None and peak > running_max:
                    running_max = peak
                times.append(clock())
                if i == 0:
                    engine.enter("decode")
                self.token = engine.token = i + 1
                return scores

        hook = model.register_forward_hook(keep_cache)
        self.enter("prefill")
        self.token = 0  # the step in progress: token 0's is the prefill forward
        options = generate_kwargs(model, spec.tokens)
        t_gen = clock()
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=mask,
                logits_processor=LogitsProcessorList([StepSampler()]),
                **options,
            )
        generate_s = clock() - t_gen
        hook.remove()
        n = len(times)
        prefill_s = times[0] - t_gen if times else generate_s
        decode_s = times[-1] - times[0] if n > 1 else 0.0
        max_alloc = self.probe.max_allocated() if hasattr(self.probe, "max_allocated") else None
        self.enter("done")
        self.emit(
            ev.Done(
                tokens=n,
                load_s=load_s,
                prefill_s=prefill_s,
                decode_s=decode_s,
                generate_s=generate_s,
                tokens_per_s=n / generate_s if generate_s > 0 else 0.0,
                decode_tokens_per_s=(n - 1) / decode_s if decode_s > 0 else None,
                max_allocated=max(running_max, max_alloc or 0)
                if max_alloc is not None
                else running_max,
            )
        )
        return 0

    def fail(self, kind: str, message: str, **extra: Any) -> None:
        self.emit(
            ev.Failed(kind=kind, message=message, phase=self.phase, token=self.token, **extra)
        )


def _held_bytes(engine: Engine) -> int | None:
    """Allocated now, and a last sample whose step peak is the high-water mark
    reached before the allocation that failed (nothing measured is lost)."""
    try:
        if engine.probe is None:
            return None
        allocated, reserved, peak = engine.probe.read()
        engine.emit(ev.Sample(None, clock(), engine.phase, allocated, reserved, peak, None))
        return allocated
    except Exception:
        return None


def short_oom_message(text: str) -> str:
    """torch's OOM text runs to a paragraph; keep what was asked and what was free."""
    sentences = re.split(r"(?<=\.) ", text.strip().splitlines()[0] if text.strip() else text)
    return " ".join(sentences[:3]).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vramtui-engine")
    parser.add_argument("--events-fd", type=int, required=True)
    args = parser.parse_args(argv)
    out = os.fdopen(args.events_fd, "w", buffering=1)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    spec = RunSpec.from_dict(json.loads(sys.stdin.readline()))
    _watch_parent()
    engine = Engine(spec, out.write)
    try:
        code = engine.run()
    except UsageError as exc:
        engine.fail("usage", str(exc))
        code = EXIT_USAGE
    except KeyboardInterrupt:
        engine.fail("cancelled", "cancelled")
        code = EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, never a traceback
        import torch

        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
            engine.fail(
                "oom",
                short_oom_message(str(exc)),
                requested_bytes=requested_bytes(str(exc)),
                held_bytes=_held_bytes(engine),
            )
            code = EXIT_OOM
        else:
            engine.fail("error", f"{type(exc).__name__}: {message}")
            code = EXIT_FAILED
            import traceback

            traceback.print_exc(file=sys.stderr)
    try:
        out.flush()
    except OSError:
        pass
    return code


if __name__ == "__main__":
    sys.stdout = sys.stderr  # nothing in the engine may write to the parent's terminal
    os._exit(main())
