"""A session's JSON summary, both ways: `summary(view)` writes it, `session_from` reads
one back into a Session and `read_summary` into the typed Summary the text views print.

The one place that knows the format. A summary holds how the run ended, its peaks, rates
and timings, the spec and the environment; what was measured step by step is in the CSV
beside it (report/export.py), which `session_from` takes as the events to replay. Files
of every earlier version read back: fields they lack take their defaults.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields, replace
from typing import Any

from vramtui.measure import events as ev
from vramtui.measure.device_view import devices_summary
from vramtui.measure.environment import Environment
from vramtui.measure.session import DeviceNvml, NvmlSample, Peak, Session, SessionView
from vramtui.measure.session_view import tokens_rate
from vramtui.measure.startup import startup_timings
from vramtui.measure.summary_record import SavedDevice, StartupTimes, Summary
from vramtui.measure.train_summary import read_training, training_section
from vramtui.runspec.program_spec import SessionSpec, saved_spec
from vramtui.runspec.run_spec import RunSpec

VERSION = 1
# What every summary holds, whatever its version.
REQUIRED_KEYS = ("vramtui_summary_version", "status", "peaks", "spec", "environment")
# What each device of a placed model holds (the rest of its entry is measured).
_HELD = ("device", "layers", "modules", "weights_bytes", "holds_head",
         "largest_block_bytes", "gpu_name", "total_bytes")  # fmt: skip
Item = ev.Event | NvmlSample | DeviceNvml  # what a session is rebuilt from


# ---- writing ---------------------------------------------------------------------
def summary(view: SessionView) -> dict[str, Any]:
    """The JSON summary: status, tokens, rates, peaks, spec and environment."""
    peaks = {name: asdict(p) for name, p in view.peaks.items()}
    for p in peaks.values():
        p["t_s"] = round(p.pop("t") - view.t0, 6)
    loaded = view.loaded
    params = loaded.params if loaded else None
    nvml_peak = _value(view.peaks.get("nvml_process"))
    alloc_peak = _value(view.peak_allocated())
    reserved_peak = _value(view.peaks.get("reserved"))
    kv_final = next(
        (s.kv_bytes for s in reversed(view.token_samples) if s.kv_bytes is not None), None
    )
    done, spec = view.done, view.spec
    run = spec if isinstance(spec, RunSpec) else None
    return {
        "vramtui_summary_version": VERSION,
        "status": view.status,
        "model": spec.model,
        "dtype": view.loaded.dtype if view.loaded else (run.dtype if run else None),
        "tokens_requested": run.tokens if run else None,
        "tokens_generated": len(view.token_samples),
        "tokens_per_s": done.tokens_per_s if done else tokens_rate(view.token_samples),
        "decode_tokens_per_s": done.decode_tokens_per_s if done else None,
        "params": params,
        "weights_bytes": loaded.weights_bytes if loaded else None,
        "quant": loaded.quant if loaded else None,
        "weights_split": asdict(loaded.split) if loaded and loaded.split else None,
        "kv_cache_storage": loaded.kv_storage if loaded else "",
        "peak_allocated_bytes": alloc_peak,
        "peak_reserved_bytes": reserved_peak,
        "peak_nvml_process_bytes": nvml_peak,
        "peak_nvml_device_used_bytes": _value(view.peaks.get("nvml_device_used")),
        "kv_cache_bytes_final": kv_final,
        "bytes_per_param_weights": _ratio(loaded.weights_bytes if loaded else None, params),
        "bytes_per_param_peak_allocated": _ratio(alloc_peak, params),
        "bytes_per_param_peak_reserved": _ratio(reserved_peak, params),
        "bytes_per_param_peak_process": _ratio(nvml_peak, params),
        "peaks": peaks,
        "timings": run_timings(view),
        "failure": _asdict_or_none(view.failure),
        "nvml_samples": view.nvml_seen,
        "nvml_rate_hz": view.nvml_rate_hz,
        "notices": list(view.notices),
        "generations": [_generation_entry(view, g) for g in view.generations],
        "allocation_snapshot": _asdict_or_none(view.allocation_snapshot),
        "devices": devices_summary(view),
        "training": training_section(view),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(view.started_wall)),
        "elapsed_s": round(view.elapsed(), 3),
        "spec": spec.to_dict(),
        "environment": view.environment.to_dict(),
    }


def run_timings(view: SessionView) -> dict[str, Any] | None:
    """The Done event's timings, with where start-up time went under "startup"."""
    timings: dict[str, Any] = asdict(view.done) if view.done else {}
    startup = startup_timings(view)
    if startup is not None:
        timings["startup"] = startup
    return timings or None


def _generation_entry(view: SessionView, g: ev.Generation) -> dict[str, Any]:
    entry = asdict(g)
    entry["t_start_s"] = round(entry.pop("t_start") - view.t0, 6)
    entry["t_end_s"] = round(entry.pop("t_end") - view.t0, 6)
    return entry


def _asdict_or_none(record: ev.Failed | ev.AllocationSnapshot | None) -> dict[str, Any] | None:
    return asdict(record) if record is not None else None


def _value(peak: Peak | None) -> int | None:
    return peak.value if peak else None


def _ratio(value: int | None, params: int | None) -> float | None:
    if value is None or not params:
        return None
    return round(value / params, 4)


# ---- reading ---------------------------------------------------------------------
def session_from(saved: dict[str, Any], items: list[Item]) -> Session:
    """The finished session a summary (as a session's JSON holds it) and its recorded
    events rebuild: the engine's events around them (Hello, Placed, Loaded, how it
    ended, its allocation snapshot) come from the summary."""
    environment = Environment.from_dict(saved["environment"])
    session = Session(saved_spec(saved["spec"]), environment, t0=0.0)
    hello = _hello(environment)
    if hello is not None:
        session.apply(hello)
    if saved.get("devices"):  # a placed model: what each device holds
        held = [{k: d[k] for k in _HELD if k in d} for d in saved["devices"]]
        session.apply(ev.Placed(held))
    loaded = _loaded(saved) if "weights_bytes" in saved else None
    if loaded is not None:
        session.apply(loaded)
    last_t = 0.0
    for item in items:
        if isinstance(item, NvmlSample):
            session.add_nvml(item)
        elif isinstance(item, DeviceNvml):
            session.add_nvml(item.sample, item.device)
        else:
            session.apply(item)
        last_t = max(last_t, getattr(item, "t", 0.0))
    for g in saved.get("generations") or []:  # a profiled program's generate() calls
        session.apply(_generation(g))
    for event in _training_events(saved.get("training")):
        session.apply(event)
    ending = _ending(saved)
    if ending is not None:
        session.apply(ending)
    snapshot = saved.get("allocation_snapshot")
    if isinstance(snapshot, dict):
        session.apply(ev.AllocationSnapshot(**_known(ev.AllocationSnapshot, snapshot)))
    for text in saved.get("notices") or []:
        session.notice(str(text))
    session.end_at(float(saved.get("elapsed_s") or last_t))
    return session


def view_from(saved: dict[str, Any], items: list[Item]) -> SessionView:
    """A session from a summary and its samples, if any: without samples, the peaks
    the summary saved."""
    view = session_from(saved, items).snapshot()
    if not items and saved.get("peaks"):
        view = _with_saved_peaks(view, saved["peaks"])
    if not items and saved.get("status") and _ending(saved) is None:
        view = replace(view, status=str(saved["status"]))
    return view


def read_summary(saved: dict[str, Any]) -> Summary:
    """The Summary a session's JSON holds, of any version: what it lacks takes its default.
    A damaged one raises KeyError, TypeError or ValueError."""
    environment = saved_environment(saved)
    up = (saved.get("timings") or {}).get("startup")
    failure = saved.get("failure")
    snapshot = saved.get("allocation_snapshot")
    spec = saved.get("spec") or {}
    cap = spec.get("cap_bytes") or (spec.get("base") or {}).get("cap_bytes")  # a training run's
    fraction = environment.other.get("memory_fraction")
    return Summary(
        status=str(saved["status"]),
        model=saved.get("model"),
        tokens_generated=int(saved["tokens_generated"]),
        tokens_requested=saved.get("tokens_requested"),
        dtype=saved.get("dtype"),
        tokens_per_s=saved.get("tokens_per_s"),
        weights_bytes=saved.get("weights_bytes"),
        quant=str(saved.get("quant") or "none"),
        weights_split=_split(saved),
        kv_cache_storage=str(saved.get("kv_cache_storage") or ""),
        kv_cache_bytes_final=saved.get("kv_cache_bytes_final"),
        bytes_per_param_weights=saved.get("bytes_per_param_weights"),
        bytes_per_param_peak_reserved=saved.get("bytes_per_param_peak_reserved"),
        bytes_per_param_peak_allocated=saved.get("bytes_per_param_peak_allocated"),
        bytes_per_param_peak_process=saved.get("bytes_per_param_peak_process"),
        peaks={name: _peak(p) for name, p in saved["peaks"].items() if p},
        startup=StartupTimes(**_known(StartupTimes, up)) if up else None,
        failure=ev.Failed(**_known(ev.Failed, failure)) if failure else None,
        notices=tuple(str(n) for n in saved.get("notices") or ()),
        generations=tuple(_generation(g) for g in saved.get("generations") or ()),
        allocation_snapshot=(
            ev.AllocationSnapshot(**_known(ev.AllocationSnapshot, snapshot)) if snapshot else None
        ),
        devices=_saved_devices(saved, environment.device),
        cap_bytes=int(cap) if cap else None,
        cap_fraction=str(fraction) if fraction else None,
        environment=environment,
        training=read_training(saved.get("training")),
    )


def saved_environment(saved: dict[str, Any]) -> Environment:
    """The environment a summary recorded (none recorded: an empty one)."""
    return Environment.from_dict(saved.get("environment") or {})


def typed_summary(view: SessionView) -> Summary:
    """The Summary of a session, as its JSON will read back."""
    return read_summary(summary(view))


def _split(saved: dict[str, Any]) -> ev.WeightSplit | None:
    """The weights as stored (packed, quantization state, full precision), if counted."""
    split = saved.get("weights_split")
    return ev.WeightSplit(**_known(ev.WeightSplit, split)) if isinstance(split, dict) else None


def _peak(saved: dict[str, Any]) -> Peak:
    token = saved.get("token")
    return Peak(int(saved["value"]), token, str(saved.get("phase")), float(saved.get("t_s") or 0))


def _saved_devices(saved: dict[str, Any], run_device: str | None) -> tuple[SavedDevice, ...]:
    """A placed model's devices; in files written before each GPU's NVML was kept, the
    run's own device given the run's NVML peak."""
    run_nvml = saved.get("peak_nvml_process_bytes")
    return tuple(
        SavedDevice(
            device=str(d.get("device")),
            layers=tuple(d.get("layers") or ()),
            weights_bytes=d.get("weights_bytes"),
            peak_allocated_bytes=d.get("peak_allocated_bytes"),
            peak_nvml_process_bytes=(
                run_nvml
                if d.get("device") == run_device and "peak_nvml_process_bytes" not in d
                else d.get("peak_nvml_process_bytes")
            ),
        )
        for d in saved.get("devices") or ()
    )


def peaks_view(
    spec: SessionSpec,
    environment: Environment,
    status: str,
    peaks: dict[str, Peak],
    *,
    loaded: ev.Loaded | None = None,
    failure: ev.Failed | None = None,
) -> SessionView:
    """A session known only by its peaks and how it ended (a `vramtui bench` cell), as
    `view_from` rebuilds a summary without its samples."""
    session = Session(spec, environment, t0=0.0)
    for event in (_hello(environment), loaded, failure):
        if event is not None:
            session.apply(event)
    session.end_at(0.0)
    view = replace(session.snapshot(), peaks=peaks)
    return replace(view, status=status) if status and failure is None else view


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _hello(environment: Environment) -> ev.Hello | None:
    if not environment.backend:
        return None
    return ev.Hello(
        pid=environment.engine_pid or 0,
        device=environment.device or "",
        backend=environment.backend,
        device_name=environment.device_name or "",
        device_uuid=None,
        total_memory=environment.device_total_bytes,
        memory_source=environment.memory_source or "",
        versions={},  # the versions are in the environment the session starts with
    )


def _loaded(saved: dict[str, Any]) -> ev.Loaded | None:
    if saved.get("weights_bytes") is None:
        return None
    timings = saved.get("timings") or {}
    return loaded_event(
        int(saved["weights_bytes"]),
        params=int(saved.get("params") or 0),
        dtype=str(saved.get("dtype") or ""),
        prompt_tokens=int(saved["spec"].get("prompt_tokens") or 0),
        load_s=float(timings.get("load_s") or 0.0),
        quant=str(saved.get("quant") or "none"),
        split=_split(saved),
        kv_storage=str(saved.get("kv_cache_storage") or ""),
    )


def loaded_event(
    weights_bytes: int,
    *,
    params: int,
    dtype: str,
    prompt_tokens: int,
    load_s: float = 0.0,
    quant: str = "none",
    split: ev.WeightSplit | None = None,
    kv_storage: str = "",
) -> ev.Loaded:
    """The Loaded event of a saved session: its weights (as stored, and how its KV cache
    was), without the model's shape."""
    return ev.Loaded(
        weights_bytes=weights_bytes,
        params=params,
        dtype=dtype,
        positions=None,
        layers=None,
        hidden=None,
        kv_heads=None,
        head_dim=None,
        prompt_tokens=prompt_tokens,
        load_s=load_s,
        quant=quant,
        split=split,
        kv_storage=kv_storage,
    )


def _generation(entry: dict[str, Any]) -> ev.Generation:
    times = {"t_start": entry["t_start_s"], "t_end": entry["t_end_s"]}
    return ev.Generation(**_known(ev.Generation, entry), **times)


def _training_events(saved: dict[str, Any] | None) -> list[ev.Event]:
    """The TrainLoaded and TrainStep events a saved "training" section was made from."""
    if not saved:
        return []
    out: list[ev.Event] = []
    if saved.get("loaded"):
        out.append(ev.TrainLoaded(**_known(ev.TrainLoaded, saved["loaded"])))
    for entry in saved.get("steps") or ():
        times = {"t_start": entry["t_start_s"], "t_end": entry["t_end_s"]}
        out.append(ev.TrainStep(**_known(ev.TrainStep, entry), **times))
    return out


def _ending(saved: dict[str, Any]) -> ev.Event | None:
    failure = saved.get("failure")
    if failure:
        return ev.Failed(**_known(ev.Failed, failure))
    timings = saved.get("timings")
    if timings:
        return ev.Done(**_known(ev.Done, timings))
    return None


def _with_saved_peaks(view: SessionView, peaks: dict[str, Any]) -> SessionView:
    """A JSON without its CSV: the peaks it saved, since there are no samples to find them."""
    saved = {
        name: Peak(int(p["value"]), p.get("token"), str(p.get("phase", "")), float(p["t_s"]))
        for name, p in peaks.items()
        if isinstance(p, dict) and "value" in p
    }
    return replace(view, peaks=saved)
