"""A session's summary as the text views read it: typed, of any version.

`summary_format.read_summary` makes one from a summary's JSON; `vramtui run`, `show`,
`profile` and the app's summary screen print it (report/summary_text.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vramtui.measure import events as ev
from vramtui.measure.environment import Environment
from vramtui.measure.session_view import Peak
from vramtui.measure.train_summary import TrainingSummary


@dataclass(frozen=True)
class StartupTimes:
    """Where start-up time went, in seconds from Run (measure/startup.py); None where a
    stage was not reached."""

    engine: str | None = None  # how the engine was started: cold, warm spare, forked ...
    imports_done_s: float | None = None  # negative: imported before Run
    imports_s: float | None = None
    device_init_s: float | None = None
    build_s: float | None = None
    first_step_s: float | None = None
    first_token_s: float | None = None


@dataclass(frozen=True)
class SavedDevice:
    """One device of a placed model: what it holds and its measured peaks."""

    device: str
    layers: tuple[int, ...] = ()
    weights_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    peak_nvml_process_bytes: int | None = None


@dataclass(frozen=True)
class Summary:
    """A summary as the text views read it. Its peaks' `t` and its generate() calls'
    times are seconds since the start."""

    status: str
    model: str | None = None
    tokens_generated: int = 0
    tokens_requested: int | None = None  # a profiled program requests no number
    dtype: str | None = None
    tokens_per_s: float | None = None
    weights_bytes: int | None = None
    quant: str = "none"  # --quant as said in one word (nf4+dq, ...)
    weights_split: ev.WeightSplit | None = None  # packed, quantization state, full precision
    kv_cache_storage: str = ""  # a quantized KV cache: its backend and bits
    kv_cache_bytes_final: int | None = None
    bytes_per_param_weights: float | None = None  # the weights alone
    bytes_per_param_peak_allocated: float | None = None
    bytes_per_param_peak_reserved: float | None = None
    bytes_per_param_peak_process: float | None = None  # NVML
    peaks: dict[str, Peak] = field(default_factory=dict)
    startup: StartupTimes | None = None
    failure: ev.Failed | None = None
    notices: tuple[str, ...] = ()
    generations: tuple[ev.Generation, ...] = ()  # a profiled program's generate() calls
    allocation_snapshot: ev.AllocationSnapshot | None = None  # --snapshot
    devices: tuple[SavedDevice, ...] = ()  # a model placed across devices
    cap_bytes: int | None = None  # --cap
    cap_fraction: str | None = None  # the memory fraction the engine set for the cap
    environment: Environment = field(default_factory=Environment)
    training: TrainingSummary | None = None  # a training run's recipe, phases and parts
