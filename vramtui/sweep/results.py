"""What one cell of a sweep measured: a CellResult, made from its session."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramtui.measure.session import Environment, SessionView
from vramtui.measure.summary_format import summary
from vramtui.runspec import RunSpec, resolve_dtype
from vramtui.sweep.grid import Cell


@dataclass
class CellResult:
    """What one cell measured. Failed cells keep the figures they reached."""

    cell: Cell
    status: str  # completed | failed | cancelled | skipped
    failure_kind: str | None = None  # oom | error | crashed | usage | cancelled
    failure_message: str | None = None
    failure_phase: str | None = None
    failure_token: int | None = None
    engine_pid: int | None = None
    dtype: str | None = None
    params: int | None = None
    weights_bytes: int | None = None
    quant_label: str | None = None  # --quant as said in one word (nf4+dq, ...)
    weights_packed_bytes: int | None = None  # quantized weights, as stored
    weights_state_bytes: int | None = None  # their quantization state
    weights_full_bytes: int | None = None  # kept in full precision
    bytes_per_param_weights: float | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_nvml_process_bytes: int | None = None
    peak_nvml_device_used_bytes: int | None = None
    bytes_per_param: float | None = None
    bytes_per_param_basis: str | None = None  # peak_nvml_process | peak_allocated
    tokens_generated: int = 0
    tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    load_s: float | None = None
    generate_s: float | None = None
    kv_cache_bytes_final: int | None = None
    compiled: str | None = None  # first | cached: a compiled decode step (static cache)
    oom_requested_bytes: int | None = None
    oom_held_bytes: int | None = None
    notices: list[str] = field(default_factory=list)
    environment: Environment = field(default_factory=Environment)

    @property
    def spec(self) -> RunSpec:
        return self.cell.spec

    @property
    def oom(self) -> bool:
        return self.failure_kind == "oom"

    @property
    def outcome(self) -> str:
        """completed | oom | failed | cancelled | skipped"""
        return "oom" if self.oom else self.status

    @classmethod
    def from_session(cls, cell: Cell, view: SessionView) -> CellResult:
        s = summary(view)
        env = view.environment
        failure = s["failure"] or {}
        timings = s["timings"] or {}
        # The allocator's high-water mark: the per-step peaks see transients that
        # the end-of-step readings miss (older summaries keep them apart).
        peak_allocated = max_present(
            s["peak_allocated_bytes"], s.get("peak_step_bytes"), timings.get("max_allocated")
        )
        nvml_peak = s["peak_nvml_process_bytes"]
        params = s["params"]
        if nvml_peak:
            basis, base = "peak_nvml_process", nvml_peak
        else:
            basis, base = "peak_allocated", peak_allocated
        completed = s["status"] == "completed"
        backend = env.backend
        dtype = (
            view.loaded.dtype
            if view.loaded
            else (resolve_dtype(cell.spec.dtype, backend) if backend else cell.spec.dtype)
        )
        split = s["weights_split"] or {}
        return cls(
            cell=cell,
            status=s["status"],
            failure_kind=failure.get("kind"),
            failure_message=failure.get("message"),
            failure_phase=failure.get("phase"),
            failure_token=failure.get("token"),
            engine_pid=env.engine_pid,
            dtype=dtype,
            params=params,
            weights_bytes=s["weights_bytes"],
            quant_label=s["quant"],
            weights_packed_bytes=split.get("packed_bytes"),
            weights_state_bytes=split.get("state_bytes"),
            weights_full_bytes=split.get("full_bytes"),
            bytes_per_param_weights=s["bytes_per_param_weights"],
            peak_allocated_bytes=peak_allocated,
            peak_reserved_bytes=s["peak_reserved_bytes"],
            peak_nvml_process_bytes=nvml_peak,
            peak_nvml_device_used_bytes=s["peak_nvml_device_used_bytes"],
            bytes_per_param=round(base / params, 4) if base and params else None,
            bytes_per_param_basis=basis if base and params else None,
            tokens_generated=s["tokens_generated"],
            tokens_per_s=s["tokens_per_s"] if completed else None,
            decode_tokens_per_s=s["decode_tokens_per_s"] if completed else None,
            load_s=timings.get("load_s") or (view.loaded.load_s if view.loaded else None),
            generate_s=timings.get("generate_s"),
            kv_cache_bytes_final=s["kv_cache_bytes_final"],
            compiled=timings.get("compiled"),
            oom_requested_bytes=failure.get("requested_bytes"),
            oom_held_bytes=failure.get("held_bytes"),
            notices=list(s["notices"]),
            environment=env,
        )

    @classmethod
    def skipped(cls, cell: Cell, reason: str) -> CellResult:
        return cls(cell=cell, status="skipped", failure_message=reason)


def max_present(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
