"""Feed the app from a list of events instead of an engine: tests, demos, replays.

`ReplayRecorder` has the Recorder's shape (`.session`, `.run()`, `.cancel()`),
so the app cannot tell it from a real run. `synthetic_run` makes a plausible,
fully deterministic event stream for a catalogue model on a made-up device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from vramtui import events as ev
from vramtui.catalogue import DTYPE_BYTES, lookup
from vramtui.session import NvmlSample, Session
from vramtui.spec import RunSpec

Item = ev.Event | NvmlSample

FIXED_ENVIRONMENT = {"vramtui": "0.1.0", "platform": "Linux (synthetic)", "hostname": "replay"}
FIXED_VERSIONS = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "cuda_runtime": "12.8",
    "python": "3.11.7",
}


def _time_of(item: Item) -> float | None:
    return getattr(item, "t", None)


class ReplayRecorder:
    """Replays `items` into a Session with the times they carry.

    delay=None applies every item at once when the recorder is made, so the
    app's first frame already shows them (deterministic screenshots); a number
    applies them in `run()`, sleeping that long between token samples (a demo).
    hold=True keeps `run()` going after the last item until `cancel()`, like a
    generation still in progress.
    """

    def __init__(
        self,
        spec: RunSpec,
        items: Sequence[Item],
        *,
        environment: dict[str, object] | None = None,
        t0: float = 0.0,
        delay: float | None = None,
        hold: bool = False,
    ) -> None:
        self.spec = spec
        self.session = Session(spec.to_dict(), dict(environment or FIXED_ENVIRONMENT), t0=t0)
        self.items = list(items)
        self.delay = delay
        self.hold = hold
        self._cancelled = threading.Event()
        self._last_t = t0
        if delay is None:
            self._apply_all(self.items)

    def _apply(self, item: Item) -> None:
        session = self.session
        t = _time_of(item)
        if t is not None:
            self._last_t = max(self._last_t, t)
        if isinstance(item, NvmlSample):
            session.add_nvml(item)
            return
        session.apply(item)
        if isinstance(item, ev.Hello) and item.backend != "cuda":
            session.notice(f"no NVML on {item.backend}: figures are {item.memory_source}")
        if session.finished:
            session.ended_at = self._last_t  # the stream's clock, not the wall's

    def _apply_all(self, items: Iterable[Item]) -> None:
        for item in items:
            self._apply(item)

    def run(self, on_event: Callable[[ev.Event], None] | None = None) -> Session:
        if self.delay is not None:
            for item in self.items:
                if self._cancelled.is_set():
                    break
                self._apply(item)
                if on_event is not None and not isinstance(item, NvmlSample):
                    on_event(item)
                if isinstance(item, ev.Sample) and item.token is not None:
                    time.sleep(self.delay)
        if self.hold and not self.session.finished:
            self._cancelled.wait()
        if not self.session.finished:
            session = self.session
            token = session.tokens_done - 1 if session.tokens_done else None
            session.fail(
                ev.Failed("cancelled", "cancelled by the user", session.current_phase, token)
            )
            session.ended_at = self._last_t
        return self.session

    def cancel(self) -> None:
        self._cancelled.set()


def synthetic_run(
    model: str = "opt-1.3b",
    tokens: int = 2000,
    *,
    upto: int | None = None,
    backend: str = "cuda",
    outcome: str = "completed",
    rate: float = 30.0,
    prompt_tokens: int = 8,
    nvml_hz: float = 20.0,
) -> list[Item]:
    """A plausible run of a catalogue model, deterministic to the byte.

    upto: stop after that many tokens (a run still in progress);
    outcome: completed | oom (fails at `upto`) | cancelled (at `upto`).
    """
    info = lookup(model)
    dtype = "float16" if backend != "cpu" else "float32"
    per = DTYPE_BYTES[dtype]
    weights = info.weights_bytes(dtype)
    kv_token = info.kv_bytes_per_token(dtype)
    context = 642_000_000 if backend == "cuda" else 0
    rss_base = 420_000_000 if backend == "cpu" else 0
    total = 85_520_809_984 if backend == "cuda" else 25_276_510_208
    items: list[Item] = []
    if backend == "cuda":
        name, source = "NVIDIA H100 80GB HBM3", "torch.cuda"
        uuid: str | None = "GPU-00000000-0000-0000-0000-000000000000"
    elif backend == "mps":
        name, source, uuid, total = "Apple MPS", "torch.mps", None, None  # type: ignore[assignment]
    else:
        name, source, uuid = "x86_64", "process RSS (psutil)", None
    device = "cuda:0" if backend == "cuda" else backend
    items.append(ev.Phase("start", 0.05))
    items.append(ev.Hello(4242, device, backend, name, uuid, total, source, dict(FIXED_VERSIONS)))
    items.append(ev.Phase("load", 0.6))

    def allocated_at(token: int | None) -> int:
        if token is None:
            return weights + rss_base
        return weights + rss_base + kv_token * (prompt_tokens + token + 1) + 2 * info.vocab * per

    def reserved_of(allocated: int) -> int | None:
        if backend == "cpu":
            return None
        block = 2 * 1024 * 1024
        return -(-int(allocated * 1.015 + 24_000_000) // block) * block

    def step_peak_of(token: int | None, allocated: int) -> int | None:
        if backend == "mps":
            return None
        if token is None:
            return allocated
        width = prompt_tokens if token == 0 else 1
        transient = width * (info.vocab * 4 + info.ffn * per * 4) + info.hidden * per * 64
        return allocated + transient

    load_t = 1.1
    load_alloc = allocated_at(None)
    items.append(
        ev.Sample(None, load_t, "load", load_alloc, reserved_of(load_alloc), load_alloc, None)
    )
    items.append(
        ev.Loaded(
            weights,
            info.params,
            dtype,
            info.positions,
            info.layers,
            info.hidden,
            info.heads,
            info.hidden // info.heads,
            prompt_tokens,
            0.5,
            "opt",
        )
    )
    items.append(ev.Phase("prefill", 1.15))
    last = tokens if upto is None else min(upto, tokens)
    token_times = [1.2 + 0.08 + i / rate for i in range(last)]
    reserved_now = reserved_of(load_alloc) or 0

    def nvml_until(t_from: float, t_to: float, reserved: int) -> None:
        if backend != "cuda":
            return
        step = 1.0 / nvml_hz
        k = int(t_from * nvml_hz) + 1
        while k * step <= t_to:
            process = context + reserved
            items.append(NvmlSample(round(k * step, 6), process, process + 1_100_000_000, total))
            k += 1

    nvml_until(0.5, load_t, context and reserved_now)
    previous_t = load_t
    for i, t in enumerate(token_times):
        allocated = allocated_at(i)
        reserved = reserved_of(allocated)
        nvml_until(previous_t, t, max(reserved or 0, reserved_now))
        reserved_now = max(reserved or 0, reserved_now)
        kv = kv_token * (prompt_tokens + i + 1)
        items.append(ev.Sample(i, t, "decode", allocated, reserved, step_peak_of(i, allocated), kv))
        if i == 0:
            items.append(ev.Phase("decode", t + 0.0001))
        previous_t = t
    end_t = previous_t + 1.0 / rate
    if upto is not None and upto < tokens:
        if outcome == "oom":
            items.append(
                ev.Failed(
                    "oom",
                    "CUDA out of memory. Tried to allocate 2.00 GiB",
                    "decode",
                    last,
                    2 * 1024**3,
                    allocated_at(last - 1),
                )
            )
        elif outcome == "cancelled":
            items.append(ev.Failed("cancelled", "cancelled by the user", "decode", last - 1))
        return items
    items.append(ev.Phase("done", end_t))
    generate_s = end_t - 1.15
    decode_s = token_times[-1] - token_times[0] if last > 1 else 0.0
    items.append(
        ev.Done(
            last,
            0.5,
            token_times[0] - 1.15,
            decode_s,
            generate_s,
            last / generate_s,
            (last - 1) / decode_s if decode_s else None,
            None,
        )
    )
    return items
