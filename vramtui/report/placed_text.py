"""How a placed run's prediction reads: one row per device, then what runs out first."""

from __future__ import annotations

from vramtui.predict.estimator import Estimate
from vramtui.predict.placed import DeviceEstimate, PlacedEstimate
from vramtui.report.summary_text import layer_span
from vramtui.report.tables import table
from vramtui.units import format_bytes


def device_row(d: DeviceEstimate) -> tuple[str, ...]:
    fits = {True: "yes", False: "NO", None: "–"}[d.fits]
    return (
        d.device,
        layer_span(d.layers),
        format_bytes(d.weights_bytes, 2),
        format_bytes(d.kv_cache_bytes, 2),
        format_bytes(d.transient_bytes, 2),
        format_bytes(d.peak_allocated_bytes, 2),
        format_bytes(d.peak_total_bytes, 2),
        format_bytes(d.max_memory_bytes, 2),
        fits,
    )


HEADER = ("device", "layers", "weights", "KV cache", "transient", "peak alloc", "peak total",
          "max-memory", "fits")  # fmt: skip


def placed_lines(est: Estimate, placed: PlacedEstimate) -> list[str]:
    model = est.model.name if est.model else "?"
    lines = [
        f"Estimate — {model}, {est.prompt_tokens} prompt + {est.tokens} new tokens, batch "
        f"{est.batch}, {est.dtype}, {est.attn}, placed by transformers' device map",
        "",
        table([device_row(d) for d in placed.devices], HEADER),
        "",
        f"weights in all: {format_bytes(sum(d.weights_bytes for d in placed.devices), 2)} "
        f"(one device: {format_bytes(est.weights_bytes, 2)})",
    ]
    first = placed.runs_out_first
    if first is not None:
        lines.append(
            f"runs out first: {first.device} (needs {format_bytes(first.peak_total_bytes, 2)}, "
            f"has {format_bytes(first.max_memory_bytes, 2)}): the map filled it with weights "
            "and left too little for the KV cache and logits"
        )
    else:
        lines.append("every device has room for generation at this budget")
    if placed.room is None:
        lines.append("no --max-memory leaves room for generation: the devices are too small")
    elif first is not None:
        from vramtui.predict.placed import format_gib

        lines.append(f"--max-memory that leaves room for generation: {format_gib(placed.room)}")
    lines.append(
        "transients are counted on the device holding the lm_head (logits and sampling); "
        "layers offloaded to the CPU run on the first GPU, their KV cache too"
    )
    return lines
