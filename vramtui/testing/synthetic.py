"""A plausible, deterministic event stream of a catalogue model: for tests and demos.

Nothing here is measured: the figures follow the model's sizes (weights, a KV
cache growing a position a step, logits) on a made-up device, to the byte the
same every time, so screenshots and tests of the screens never change by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramtui.measure import events as ev
from vramtui.measure.session import DeviceNvml, NvmlSample
from vramtui.models.architecture import DTYPE_BYTES, ModelInfo
from vramtui.models.catalogue import lookup

Item = ev.Event | NvmlSample | DeviceNvml

FIXED_VERSIONS = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "cuda_runtime": "12.8",
    "python": "3.11.7",
}
# backend -> (device name, memory source, UUID, total memory)
_DEVICES = {
    "cuda": (
        "NVIDIA H100 80GB HBM3",
        "torch.cuda",
        "GPU-00000000-0000-0000-0000-000000000000",
        85_520_809_984,
    ),
    "mps": ("Apple MPS", "torch.mps", None, None),
    "cpu": ("AMD EPYC 7B13 64-Core Processor", "process RSS (psutil)", None, 25_276_510_208),
}
LOAD_T, PREFILL_T = 1.1, 1.15
BLOCK = 2 * 1024 * 1024  # the caching allocator's large segment


@dataclass(frozen=True)
class _Figures:
    """Memory of the made-up run, step by step."""

    info: ModelInfo
    backend: str
    prompt_tokens: int

    @property
    def dtype(self) -> str:
        return "float32" if self.backend == "cpu" else "float16"

    @property
    def elem(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def context(self) -> int:
        return 642_000_000 if self.backend == "cuda" else 0

    def allocated(self, token: int | None) -> int:
        base = self.info.weights_bytes(self.dtype) + (420_000_000 if self.backend == "cpu" else 0)
        if token is None:
            return base
        kv = self.info.kv_bytes_per_token(self.dtype) * (self.prompt_tokens + token + 1)
        return base + kv + 2 * self.info.vocab * self.elem

    def reserved(self, allocated: int) -> int | None:
        if self.backend == "cpu":
            return None
        return -(-int(allocated * 1.015 + 24_000_000) // BLOCK) * BLOCK

    def step_peak(self, token: int | None, allocated: int) -> int | None:
        if self.backend == "mps":
            return None
        if token is None:
            return allocated
        width = self.prompt_tokens if token == 0 else 1
        info, e = self.info, self.elem
        return allocated + width * (info.vocab * 4 + info.ffn * e * 4) + info.hidden * e * 64

    def sample(self, token: int, t: float) -> ev.Sample:
        allocated = self.allocated(token)
        kv = self.info.kv_bytes_per_token(self.dtype) * (self.prompt_tokens + token + 1)
        phase = "prefill" if token == 0 else "decode"
        peak = self.step_peak(token, allocated)
        return ev.Sample(token, t, phase, allocated, self.reserved(allocated), peak, kv)


def _start(f: _Figures) -> list[Item]:
    name, source, uuid, total = _DEVICES[f.backend]
    device = "cuda:0" if f.backend == "cuda" else f.backend
    load = f.allocated(None)
    info = f.info
    return [
        ev.Phase("start", 0.05),
        ev.Hello(4242, device, f.backend, name, uuid, total, source, dict(FIXED_VERSIONS)),
        ev.Phase("load", 0.6),
        ev.Sample(None, LOAD_T, "load", load, f.reserved(load), load, None),
        ev.Loaded(
            info.weights_bytes(f.dtype),
            info.params,
            f.dtype,
            info.positions,
            info.layers,
            info.hidden,
            info.heads,
            info.hidden // info.heads,
            f.prompt_tokens,
            0.5,
            "opt",
        ),
        ev.Phase("prefill", PREFILL_T),
    ]


def _nvml(f: _Figures, t_from: float, t_to: float, reserved: int, hz: float) -> list[Item]:
    """NVML readings at `hz` in (t_from, t_to]: the context plus what is reserved."""
    if f.backend != "cuda":
        return []
    total = _DEVICES["cuda"][3]
    out: list[Item] = []
    k = int(t_from * hz) + 1
    while k / hz <= t_to:
        process = f.context + reserved
        out.append(NvmlSample(round(k / hz, 6), process, process + 1_100_000_000, total))
        k += 1
    return out


def _steps(f: _Figures, times: list[float], nvml_hz: float) -> list[Item]:
    out: list[Item] = []
    reserved_now = f.reserved(f.allocated(None)) or 0
    out += _nvml(f, 0.5, LOAD_T, f.context and reserved_now, nvml_hz)
    previous_t = LOAD_T
    for i, t in enumerate(times):
        sample = f.sample(i, t)
        out += _nvml(f, previous_t, t, max(sample.reserved or 0, reserved_now), nvml_hz)
        reserved_now = max(sample.reserved or 0, reserved_now)
        out.append(sample)
        if i == 0:
            out.append(ev.Phase("decode", t + 0.0001))
        previous_t = t
    return out


def _end(f: _Figures, times: list[float], rate: float, outcome: str, stopped: bool) -> list[Item]:
    last = len(times)
    if stopped:
        if outcome == "oom":
            oom = ev.Failed(
                "oom",
                "CUDA out of memory. Tried to allocate 2.00 GiB",
                "decode",
                last,
                2 * 1024**3,
                f.allocated(last - 1),
            )
            return [oom]
        if outcome == "cancelled":
            return [ev.Failed("cancelled", "cancelled by the user", "decode", last - 1)]
        return []
    end_t = times[-1] + 1.0 / rate
    generate_s = end_t - PREFILL_T
    decode_s = times[-1] - times[0] if last > 1 else 0.0
    decode_rate = (last - 1) / decode_s if decode_s else None
    done = ev.Done(
        last, 0.5, times[0] - PREFILL_T, decode_s, generate_s, last / generate_s, decode_rate
    )
    return [ev.Phase("done", end_t), done]


def _opt(name: str) -> ModelInfo:
    info = lookup(name).opt
    if info is None:
        raise ValueError(f"synthetic runs are drawn for OPT models, not {name}")
    return info


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
    figures = _Figures(_opt(model), backend, prompt_tokens)
    last = tokens if upto is None else min(upto, tokens)
    times = [1.2 + 0.08 + i / rate for i in range(last)]
    stopped = upto is not None and upto < tokens
    return (
        _start(figures)
        + _steps(figures, times, nvml_hz)
        + _end(figures, times, rate, outcome, stopped)
    )


def on_two_gpus(items: list[Item], model: str = "opt-1.3b", split: int | None = None) -> list[Item]:
    """The same run as if a device map had placed the model on cuda:0 and cuda:1:
    layers from `split` on (half, by default) and their cache on cuda:1; the rest,
    the embeddings, the head and every transient on cuda:0, the run's device. cuda:1
    is read by NVML too: a context of its own plus what its allocator reserves (and
    cuda:0's readings lose what moved there)."""
    info = _opt(model)
    split = info.layers // 2 if split is None else split
    share = (info.layers - split) / info.layers
    weights1 = int(_weights_of(items) * share)
    out: list[Item] = []
    reserved1: int | None = None  # cuda:1's, once the model is placed
    for item in items:
        if isinstance(item, ev.Loaded):
            out += [item, _placed(item, info, split, weights1)]
            reserved1 = -(-weights1 // BLOCK) * BLOCK
        elif isinstance(item, ev.Sample) and item.allocated is not None:
            sample = _split_sample(item, weights1 + int((item.kv_bytes or 0) * share))
            assert sample.devices is not None
            reserved1 = max(reserved1 or 0, sample.devices[1][2] or 0)
            out.append(sample)
        elif isinstance(item, NvmlSample) and reserved1 is not None:
            assert item.process_bytes is not None and item.device_used is not None
            first = replace(item, process_bytes=item.process_bytes - reserved1,
                            device_used=item.device_used - reserved1)  # fmt: skip
            process = 500_000_000 + reserved1
            second = NvmlSample(item.t, process, process + 400_000_000, item.device_total)
            out += [first, DeviceNvml("cuda:1", second)]
        else:
            out.append(item)
    return out


def _weights_of(items: list[Item]) -> int:
    return next(i.weights_bytes for i in items if isinstance(i, ev.Loaded))


def _placed(loaded: ev.Loaded, info: ModelInfo, split: int, weights1: int) -> ev.Placed:
    name, _, _, total = _DEVICES["cuda"]
    gpu = {"gpu_name": name, "total_bytes": total}
    first = {"device": "cuda:0", "weights_bytes": loaded.weights_bytes - weights1,
             "layers": list(range(split)), "modules": ["embed_tokens", "lm_head"],
             "holds_head": True, **gpu}  # fmt: skip
    second = {"device": "cuda:1", "weights_bytes": weights1,
              "layers": list(range(split, info.layers)), "modules": [], **gpu}  # fmt: skip
    return ev.Placed([first, second])


def _split_sample(s: ev.Sample, second: int) -> ev.Sample:
    """cuda:1 holds `second` bytes, steady; cuda:0 the rest of the sample."""
    assert s.allocated is not None
    reserved1 = -(-second // BLOCK) * BLOCK if s.reserved is not None else None
    first = (
        s.allocated - second,
        s.reserved - reserved1 if s.reserved is not None and reserved1 is not None else None,
        s.step_peak - second if s.step_peak is not None else None,
    )
    devices = (("cuda:0", *first), ("cuda:1", second, reserved1, second))
    return ev.Sample(s.token, s.t, s.phase, *first, s.kv_bytes, devices)
