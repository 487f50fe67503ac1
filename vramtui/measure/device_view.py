"""A placed model's devices, read from a session: each one's summary, and the session
as seen from one device (its figures where the run's own device's were).

Pure data. `on_device(view, "cuda:1")` is a SessionView whose samples, peaks and NVML
readings are cuda:1's, whose KV cache is the share of the layers it holds, and whose
weights are those placed there, so every reader of a session (the plot, the breakdown,
the out-of-memory forecast) reads one device without knowing it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.session_view import Peak, SessionView

RSS_SOURCE = "process RSS (psutil)"


def _value(peak: Peak | None) -> int | None:
    return peak.value if peak else None


def run_device(view: SessionView) -> str | None:
    """The run's own device: the one its main series and NVML stream measure."""
    return view.hello.device if view.hello is not None else view.environment.device


def holds_head(held: dict[str, Any]) -> bool:
    """Whether a placed device holds the lm_head (files written before the flag: by its
    modules' names)."""
    if "holds_head" in held:
        return bool(held["holds_head"])
    return any(str(m).split(".")[-1] == "lm_head" for m in held.get("modules", ()))


def devices_summary(view: SessionView) -> list[dict[str, Any]]:
    """Each device of a placed model: what it holds and its measured peaks (a CPU's are
    the process's RSS, offloaded weights included; each GPU's NVML process and device
    figures). Empty for one device."""
    placed = {str(d["device"]): d for d in view.placed.devices} if view.placed else {}
    head = run_device(view)
    out = []
    for device in dict.fromkeys([*placed, *view.device_peaks]):
        held = placed.get(device, {})
        peaks = view.device_peaks.get(device, {})
        nvml = view.peaks if device == head else peaks
        peak = peaks.get("step_peak") or peaks.get("allocated")
        out.append(
            {
                "device": device,
                "layers": list(held.get("layers", [])),
                "modules": list(held.get("modules", [])),
                "weights_bytes": held.get("weights_bytes"),
                "holds_head": holds_head(held),
                "largest_block_bytes": held.get("largest_block_bytes"),
                "memory_source": "torch.cuda" if device.startswith("cuda") else RSS_SOURCE,
                "peak_allocated_bytes": _value(peak),
                "peak_reserved_bytes": _value(peaks.get("reserved")),
                "final_allocated_bytes": _last_allocated(view, device),
                "peak_nvml_process_bytes": _value(nvml.get("nvml_process")),
                "peak_nvml_device_used_bytes": _value(nvml.get("nvml_device_used")),
            }
        )
    return out


def _last_allocated(view: SessionView, device: str) -> int | None:
    for sample in reversed(view.samples):
        for name, allocated, *_ in sample.devices or ():
            if name == device:
                return allocated
    return None


def device_names(view: SessionView) -> list[str]:
    """A placed model's devices, in placement order ([] for one device)."""
    return [d["device"] for d in devices_summary(view)]


def kv_share(view: SessionView, device: str) -> float:
    """The share of the KV cache a device holds: its layers' (layers offloaded to the CPU
    run on the first GPU, accelerate's execution device, so their cache is there)."""
    if view.placed is None:
        return 1.0
    layers = {str(d["device"]): len(d.get("layers", ())) for d in view.placed.devices}
    total = sum(layers.values())
    gpus = [d for d in layers if d.startswith("cuda")]
    main = gpus[0] if gpus else None
    if not total or (main is not None and not device.startswith("cuda")):
        return 0.0 if total else 1.0
    mine = layers.get(device, 0)
    if device == main:
        mine += sum(n for d, n in layers.items() if not d.startswith("cuda"))
    return mine / total


def _sample_on(s: ev.Sample, device: str, head: bool, share: float) -> ev.Sample:
    kv = round(s.kv_bytes * share) if s.kv_bytes is not None else None
    if head:
        return replace(s, kv_bytes=kv)
    mine = next((d for d in s.devices or () if d[0] == device), None)
    allocated, reserved, peak = mine[1:] if mine is not None else (None, None, None)
    return replace(s, allocated=allocated, reserved=reserved, step_peak=peak, kv_bytes=kv)


def on_device(view: SessionView, device: str) -> SessionView:
    """The session as one of its placed devices saw it (see the module's note)."""
    head = device == run_device(view)
    share = kv_share(view, device)
    samples = tuple(_sample_on(s, device, head, share) for s in view.samples)
    placed = view.placed.devices if view.placed else []
    facts = next((d for d in placed if d.get("device") == device), {})
    cpu = not device.startswith("cuda")
    env = view.environment
    if not head:
        env = replace(
            env,
            device=device,
            gpu_name=facts.get("gpu_name"),
            device_name=None,
            placed_device=True,  # one device of several (report.summary_text.device_note)
            backend="cpu" if cpu else env.backend,
            memory_source=RSS_SOURCE if cpu else env.memory_source,
            device_total_bytes=env.memory_limit_bytes if cpu else facts.get("total_bytes"),
        )
    hello = view.hello
    if hello is not None and not head:
        hello = replace(
            hello,
            device=device,
            backend=str(env.backend),
            device_name=str(facts.get("gpu_name") or device),
            device_uuid=None,
            total_memory=env.device_total_bytes,
            memory_source=str(env.memory_source),
        )
    own = view.device_peaks.get(device, {})
    return replace(
        view,
        environment=env,
        hello=hello,
        samples=samples,
        token_samples=tuple(s for s in samples if s.token is not None),
        peaks=view.peaks if head else dict(own),
        nvml=view.nvml if head else view.device_nvml.get(device, ()),
        nvml_token_max=(
            view.nvml_token_max if head else view.device_nvml_token_max.get(device, {})
        ),
    )
