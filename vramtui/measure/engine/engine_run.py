"""The engine's run: start, build the model, generate, and report every step.

Runs inside the engine process (`vramtui.measure.engine.engine_main`); the only place,
with `model`, `probes` and `sampler`, that imports torch and transformers.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from vramtui.errors import UsageError
from vramtui.measure import events as ev
from vramtui.runspec import RunSpec, resolve_dtype
from vramtui.testing import faults as test_faults

clock = time.monotonic


class Emitter:
    """Events out, and the per-step sample: what every place that measures shares
    (the engine, and the hooks in a profiled program)."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self.phase = "start"
        self.token: int | None = None  # the step in progress
        self.probe: Any = None
        self.device_probes: Any = None  # a placed model's devices (probes.DeviceProbes)
        self.running_max = 0  # the highest step peak seen, for the Done event

    def emit(self, event: ev.Event) -> None:
        self._write(ev.encode(event) + "\n")

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.emit(ev.Phase(phase, clock()))

    def sample(self, token: int | None, phase: str, kv: int | None = None) -> int | None:
        readings: tuple[int | None, int | None, int | None] = self.probe.read()
        allocated, reserved, peak = readings
        devices = self.device_probes.read() if self.device_probes is not None else None
        self.emit(ev.Sample(token, clock(), phase, allocated, reserved, peak, kv, devices))
        self.probe.reset_peak()
        if peak is not None and peak > self.running_max:
            self.running_max = peak
        return peak

    def fail(self, kind: str, message: str, **extra: Any) -> None:
        self.emit(
            ev.Failed(kind=kind, message=message, phase=self.phase, token=self.token, **extra)
        )


class Engine(Emitter):
    def __init__(self, spec: RunSpec, write: Callable[[str], object]) -> None:
        super().__init__(write)
        self.spec = spec
        self.snapshots: Any = None  # --snapshot: measure.engine.snapshot.Snapshots

    def run(self) -> int:
        self.enter("start")
        device, dtype = self.start()
        from vramtui.measure.engine.snapshot import Snapshots

        self.snapshots = Snapshots.start(self.spec, device, self.emit)
        try:
            return self.load_and_generate(device, dtype)
        except BaseException as exc:
            if self.snapshots is not None:
                self.snapshots.ended_by(exc, self.token, self.phase)
            raise

    def load_and_generate(self, device: Any, dtype: str) -> int:
        self.enter("load")
        self.probe.reset_peak()
        t_load = clock()
        if self.spec.device_map:
            self.watch_devices()
        built = self.build(device, dtype)
        load_s = clock() - t_load
        if built.placement is not None:
            self.device_probes.keep({d.device for d in built.placement.devices})
            self.emit(ev.Placed([placed_entry(d) for d in built.placement.devices]))
        self.sample(None, "load")
        ids = self.prompt(built, device)
        self.emit(loaded_event(built, dtype, int(ids.shape[1]), load_s, self.spec))
        self.generate(built.model, ids, load_s)
        return 0

    def build(self, device: Any, dtype: str) -> Any:
        """The model the spec names, loaded (model.BuiltModel)."""
        from vramtui.measure.engine.model import build

        return build(self.spec, device, dtype)

    def start(self) -> tuple[Any, str]:
        """Pick the device, set up the probe and kernels, say hello."""
        import torch

        from vramtui.measure.engine.device import apply_cap, resolve_device
        from vramtui.measure.engine.model import configure_backends
        from vramtui.measure.engine.probes import make_probe

        device = resolve_device(placed_device(self.spec) or self.spec.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        capped = apply_cap(device, self.spec.cap_bytes)  # before anything is allocated
        dtype = resolve_dtype(self.spec.dtype, device.type)
        self.probe = make_probe(device.type, device.index or 0)
        backends = configure_backends(self.spec, device)
        self.emit(hello_event(device, self.probe.source, {**backends, **capped}))
        return device, dtype

    def watch_devices(self) -> None:
        """Probes on every device the map may use, peaks reset before the load."""
        from vramtui.measure.engine.model import max_memory_of
        from vramtui.measure.engine.probes import DeviceProbes, candidate_devices

        self.device_probes = DeviceProbes(candidate_devices(max_memory_of(self.spec)))
        self.device_probes.reset_peak()

    def prompt(self, built: Any, device: Any) -> Any:
        """The prompt ids on the device: the tokenized text, or random ids."""
        from vramtui.measure.engine.model import random_prompt

        spec = self.spec
        if spec.prompt:
            ids = built.tokenizer(spec.prompt, return_tensors="pt").input_ids
            ids = ids.repeat(spec.batch, 1)
        else:
            ids = random_prompt(spec, built.model.config)
        positions = getattr(built.model.config, "max_position_embeddings", None)
        if positions and int(ids.shape[1]) + spec.tokens > positions:
            raise UsageError(
                f"prompt ({int(ids.shape[1])}) + new tokens ({spec.tokens}) exceeds the "
                f"model's limit of {positions} positions",
                field="tokens",
            )
        return ids.to(device)

    def generate(self, model: Any, ids: Any, load_s: float) -> None:
        """generate() with a sample after every step's forward; then Done."""
        import torch
        from transformers import LogitsProcessorList

        from vramtui.measure.engine.model import generate_kwargs
        from vramtui.measure.engine.sampler import CacheWatch, step_sampler

        times: list[float] = []
        cache = CacheWatch(model)

        def on_step(i: int) -> None:
            phase = "prefill" if i == 0 else "decode"
            peak = self.sample(i, phase, cache.bytes())
            if self.snapshots is not None:
                self.snapshots.step(i, phase, peak)
            times.append(clock())
            if i == 0:
                self.enter("decode")
            self.token = i + 1

        self.enter("prefill")
        self.token = 0  # the step in progress: token 0's is the prefill forward
        sampler = step_sampler(on_step, test_faults.from_environment())
        t_gen = clock()
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                logits_processor=LogitsProcessorList([sampler]),
                **generate_kwargs(model, self.spec.tokens, self.spec.cache, self.spec.cache_bits),
            )
        generate_s = clock() - t_gen
        cache.remove()
        if self.snapshots is not None:
            self.snapshots.finish()
        self.enter("done")
        self.emit(self.done_event(times, t_gen, generate_s, load_s))

    def done_event(
        self, times: list[float], t_gen: float, generate_s: float, load_s: float
    ) -> ev.Done:
        n = len(times)
        prefill_s = times[0] - t_gen if times else generate_s
        decode_s = times[-1] - times[0] if n > 1 else 0.0
        max_alloc = self.probe.max_allocated() if hasattr(self.probe, "max_allocated") else None
        return ev.Done(
            tokens=n,
            load_s=load_s,
            prefill_s=prefill_s,
            decode_s=decode_s,
            generate_s=generate_s,
            tokens_per_s=n / generate_s if generate_s > 0 else 0.0,
            decode_tokens_per_s=(n - 1) / decode_s if decode_s > 0 else None,
            max_allocated=max(self.running_max, max_alloc or 0),
            compiled=compile_outcome(),
        )


def compile_outcome() -> str | None:
    """Whether generate compiled anything, and from inductor's cache or not."""
    dynamo = sys.modules.get("torch._dynamo.utils")
    if dynamo is None:
        return None
    inductor = dynamo.counters.get("inductor", {})
    if inductor.get("fxgraph_cache_miss", 0):
        return "first"
    if inductor.get("fxgraph_cache_hit", 0):
        return "cached"
    return "first" if inductor else None  # compiled with inductor's cache off


def placed_device(spec: RunSpec) -> str | None:
    """A placed run's main device (its inputs, its main series): the first GPU
    --max-memory names, or the CPU where it names none; None: as --device says."""
    if not spec.device_map or not spec.max_memory:
        return None
    from vramtui.runspec.device_choice import DeviceList
    from vramtui.runspec.device_map import first_device, parse_max_memory

    return first_device(parse_max_memory(spec.max_memory), DeviceList(()))


def placed_entry(placed: Any) -> dict[str, Any]:
    """What a device holds (models.placement.DevicePlacement) and, for a GPU, what it is:
    its name, memory and UUID (by which the parent finds it in NVML)."""
    entry: dict[str, Any] = placed.to_dict()
    if placed.device.startswith("cuda:"):
        import torch

        from vramtui.measure.engine.device import device_facts

        name, uuid, total = device_facts(torch.device(placed.device))
        entry.update(gpu_name=name, uuid=uuid, total_bytes=total)
    return entry


def hello_event(device: Any, memory_source: str, extra: dict[str, str]) -> ev.Hello:
    """Who this process is, what it measures on, and the versions that matter."""
    import torch
    import transformers

    from vramtui.measure.engine.device import device_facts

    name, uuid, total = device_facts(device)
    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        **extra,
    }
    if device.type == "cuda":
        versions["cuda_runtime"] = str(torch.version.cuda or "")
    return ev.Hello(
        os.getpid(), str(device), device.type, name, uuid, total, memory_source, versions
    )


def quant_of(config: Any) -> str:
    """A model loaded by a profiled program: the quantizer its config names, or none."""
    quantization = getattr(config, "quantization_config", None)
    if isinstance(quantization, dict):
        return str(quantization.get("quant_method") or "none")
    method = getattr(quantization, "quant_method", None)
    return str(getattr(method, "value", method) or "none")


def loaded_event(
    built: Any, dtype: str, prompt_tokens: int, load_s: float, spec: RunSpec | None = None
) -> ev.Loaded:
    """What was loaded: the weights as stored (quantized or not), the model's shape, and
    how the run's KV cache is stored."""
    from vramtui.measure.engine.model import kv_storage
    from vramtui.runspec.quant import quant_label

    config = built.model.config
    hidden = getattr(config, "hidden_size", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden and heads else None)
    return ev.Loaded(
        weights_bytes=built.weights_bytes,
        params=built.params,
        dtype=dtype,
        positions=getattr(config, "max_position_embeddings", None),
        layers=getattr(config, "num_hidden_layers", None),
        hidden=hidden,
        kv_heads=kv_heads,
        head_dim=head_dim,
        prompt_tokens=prompt_tokens,
        load_s=load_s,
        model_type=str(getattr(config, "model_type", "")),
        quant=quant_label(spec.quant, spec.double_quant) if spec else quant_of(config),
        split=getattr(built, "split", None),
        kv_storage=kv_storage(spec.cache, spec.cache_bits, dtype) if spec else "",
    )
