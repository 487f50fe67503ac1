"""The words and figures the screens show, built from a Session without Textual."""

from __future__ import annotations

from dataclasses import dataclass

from vramtui.measure.device_view import devices_summary
from vramtui.measure.session import SessionView
from vramtui.report.summary_text import series_labels
from vramtui.runspec import RunSpec
from vramtui.runspec.program_spec import tokens_requested
from vramtui.runspec.quant import quant_label
from vramtui.runspec.train_spec import TrainSpec
from vramtui.tui.plotdata import TABLE_SERIES
from vramtui.units import format_count


def short_bytes(value: int | None) -> str:
    """Three significant figures, for narrow columns: 360 MB, 54.8 kB, 2.78 GB."""
    if value is None:
        return "–"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale * 0.9995:  # 999,999 B is 1.00 MB, not 1000 kB
            number = value / scale
            decimals = 0 if abs(number) >= 99.95 else 1 if abs(number) >= 9.995 else 2
            return f"{number:.{decimals}f} {unit}"
    return f"{value} B"


def duration(seconds: float | None) -> str:
    """0:07, 1:02:03; '–' when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return "–"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def backend_of(session: SessionView) -> str | None:
    if session.hello is not None:
        return session.hello.backend
    return None


def labels_for(session: SessionView) -> dict[str, str]:
    return series_labels(backend_of(session))


def short_label(label: str) -> str:
    """For the narrow table beside the plot: 'allocator reserved' -> 'reserved'."""
    return label.removeprefix("allocator ").replace("per-step peak", "step peak")


def phase_text(session: SessionView, cancelling: bool = False) -> str:
    if session.finished:
        failure = session.failure
        if session.status == "failed" and failure is not None:
            return f"failed ({failure.kind})"
        return session.status
    if cancelling:
        return "cancelling"
    if session.hello is None:
        return "starting engine"
    return session.current_phase


def status_text(session: SessionView, now: float | None, cancelling: bool = False) -> str:
    """phase │ token 37/2000 │ 104.2 tok/s │ elapsed 0:12 │ ETA 0:19"""
    total = tokens_requested(session.spec)
    done = session.tokens_done
    rate = session.live_tokens_per_s()
    if not total:  # a profiled program: no budget, so no ETA; which generate() call
        return program_status(session, now, cancelling, rate)
    if session.finished:
        summary_rate = session.done.tokens_per_s if session.done else rate
        rate = summary_rate
        eta = "done" if session.status == "completed" else "–"
    elif rate and done:
        eta = duration((total - done) / rate)
    else:
        eta = "–"
    parts = [
        phase_text(session, cancelling),
        f"token {done}/{total}",
        f"{rate:.1f} tok/s" if rate else "– tok/s",
        f"elapsed {duration(session.elapsed(now))}",
        f"ETA {eta}",
    ]
    return " │ ".join(parts)


def program_status(
    session: SessionView, now: float | None, cancelling: bool, rate: float | None
) -> str:
    """program │ generate() #2 │ token 410 │ 104.2 tok/s │ elapsed 0:12"""
    calls = sum(1 for p in session.phases if p.name == "prefill")
    if session.done is not None:  # ended: the whole program's rate, as in the summary
        rate = session.done.tokens_per_s
    parts = [phase_text(session, cancelling)]
    if calls:
        parts.append(f"generate() #{calls - 1}")
    parts += [
        f"token {session.tokens_done}",
        f"{rate:.1f} tok/s" if rate else "– tok/s",
        f"elapsed {duration(session.elapsed(now))}",
    ]
    return " │ ".join(parts)


@dataclass(frozen=True)
class SeriesRow:
    name: str
    label: str
    now: str
    peak: str
    at: str


def series_rows(session: SessionView) -> list[SeriesRow]:
    """Current and peak figure of every series the run has."""
    labels = labels_for(session)
    rows = []
    for name in TABLE_SERIES:
        peak = session.peaks.get(name)
        if peak is None:
            continue
        at = f"token {peak.token}" if peak.token is not None else peak.phase
        rows.append(
            SeriesRow(
                name,
                short_label(labels[name]),
                short_bytes(session.latest(name)),
                short_bytes(peak.value),
                at,
            )
        )
    return rows


def quantization(spec: RunSpec) -> list[str]:
    """How a run's weights and KV cache are quantized: [] when they are not, else e.g.
    ['nf4+dq', 'KV 4-bit']."""
    said = [quant_label(spec.quant, spec.double_quant)] if spec.quant != "none" else []
    return said + ([f"KV {spec.cache_bits}-bit"] if spec.cache == "quantized" else [])


def run_name(spec: RunSpec) -> str:
    """The model, and its quantization where it has one: 'opt-13b (nf4+dq, KV 4-bit)'."""
    quantized = quantization(spec)
    return f"{spec.model} ({', '.join(quantized)})" if quantized else spec.model


def run_title(session: SessionView) -> str:
    """opt-1.3b · float16 · sdpa · batch 1 · cuda:0 (NVIDIA H100 80GB HBM3); a quantized
    run's quantization after its dtype: opt-1.3b · float16 · nf4+dq · KV 4-bit · …"""
    spec = session.spec
    env = session.environment
    device = env.device or (spec.device if isinstance(spec, RunSpec) else None)
    name = env.gpu_name or env.device_name
    where = f"{device} ({name})" if name else str(device)
    if isinstance(spec, TrainSpec):  # a training run: its model and recipe
        dtype = session.loaded.dtype if session.loaded else spec.base.dtype or "auto dtype"
        return " · ".join([spec.model, dtype, spec.method, f"batch {spec.base.batch}", where])
    if not isinstance(spec, RunSpec):  # a profiled program: its command line
        return " · ".join([spec.command if spec.source == "program" else spec.model, where])
    dtype = session.loaded.dtype if session.loaded else spec.dtype or "auto dtype"
    parts = [spec.model, dtype, *quantization(spec), spec.attn, f"batch {spec.batch}", where]
    return " · ".join(parts)


def side_facts(session: SessionView, room: int | None = None) -> str:
    """Below the series table: what is loaded, until the breakdown says more; for one
    device of a placed model, the `room` it has left (report.forecast.headroom)."""
    loaded = session.loaded
    if loaded is None:
        return "loading the model…" if session.hello else "starting the engine…"
    if room is not None:
        return f"room {short_bytes(room)} · {format_count(loaded.params)} params"
    return f"{format_count(loaded.params)} params · loaded in {loaded.load_s:.2f} s"


def device_lines(session: SessionView, selected: str | None = None) -> str:
    """A placed model's devices, a line each: the layers it holds, allocated now and its
    peak, the one the screen follows marked ('' for a run on one device)."""
    from vramtui.report.summary_text import layer_span

    devices = devices_summary(session)
    if not devices:
        return ""
    lines = ["devices: now / peak"]
    for d in devices:
        layers = layer_span(d["layers"])
        held = f"L{layers}" if layers != "–" else "–"
        now, peak = d["final_allocated_bytes"], d["peak_allocated_bytes"]
        mark = "▸" if d["device"] == selected else " "
        lines.append(f"{mark}{d['device']:<7}{held:<8}{short_bytes(now)} / {short_bytes(peak)}")
    return "\n".join(lines)
