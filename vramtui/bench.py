"""`vramtui bench`: a grid of runs, each in a fresh engine process, as one table.

Session layer: no torch, no textual. `Axes` (the flags) expands into `Cell`s,
each checked with `vramtui.spec.validate` before anything runs; `Sweep` runs
them one after another through `Recorder` (a fresh engine process per cell, so
no cell inherits another's allocator cache or CUDA context) and hands back one
`CellResult` per cell as it finishes; `csv_text` and `markdown_text` render the
results so far, so a caller can rewrite its files after every cell.

Order: repeats are the outermost loop (every configuration once, then again),
so an interrupted sweep holds each configuration at least once as early as
possible; within a pass models, then token budgets, prompt lengths, batch
sizes, dtypes and attention kernels.

Repeats in the markdown table: one row per configuration; the memory columns
show the largest figure over its completed repeats (what a card must hold),
tok/s the median with the range (min–max). The CSV keeps every repeat.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from vramtui import events as ev
from vramtui.catalogue import lookup
from vramtui.devices import check_device
from vramtui.errors import UsageError
from vramtui.recorder import Recorder
from vramtui.session import Session
from vramtui.spec import (
    ATTENTION,
    DTYPES,
    RunSpec,
    load_config_source,
    max_positions,
    resolve_dtype,
    validate,
)

T = TypeVar("T")

DEFAULT_TOKENS = (200,)
DEFAULT_PROMPT_TOKENS = (8,)
DEFAULT_BATCH = (1,)
DEFAULT_ATTN = ("sdpa",)


# ---- the grid ------------------------------------------------------------------------


def split_list(flag: str, text: str, convert: Callable[[str], T], what: str) -> list[T]:
    """'20,2000' -> [20, 2000]: comma-separated, each item converted, duplicates dropped."""
    out: list[T] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise UsageError(f"{flag}: empty item in {text!r} (write e.g. {flag} a,b)")
        try:
            value = convert(item)
        except ValueError:
            raise UsageError(f"{flag}: not {what}: {item!r}") from None
        if value not in out:
            out.append(value)
    return out


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()

    return convert


def parse_counts(flag: str, text: str) -> list[int]:
    return split_list(flag, text, _positive, "a positive whole number")


def parse_choices(flag: str, text: str, choices: Sequence[str]) -> list[str]:
    return split_list(flag, text, _choice(choices), f"one of {', '.join(choices)}")


def parse_names(flag: str, text: str) -> list[str]:
    return split_list(flag, text, str, "a name")


@dataclass(frozen=True)
class ModelRef:
    """One value of the model axis: a catalogue name, a config.json or a checkpoint.

    `name` labels the model in tables; for a config or checkpoint it is a short
    name of the path (the command layer picks it)."""

    name: str
    source: str = "architecture"
    path: str | None = None


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its place (1-based), its repeat (1-based) and its spec."""

    index: int
    repeat: int
    spec: RunSpec

    @property
    def key(self) -> tuple[Any, ...]:
        """The configuration, the same for every repeat of it."""
        s = self.spec
        return (s.model, s.source, s.path, s.tokens, s.prompt_tokens, s.batch, s.dtype, s.attn)

    @property
    def model_key(self) -> tuple[str, str, str | None]:
        return (self.spec.model, self.spec.source, self.spec.path)


@dataclass
class Axes:
    """Every value of every axis; `cells()` is their product, times `repeat`."""

    models: list[ModelRef] = field(default_factory=list)
    tokens: list[int] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    prompt_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_PROMPT_TOKENS))
    batch: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH))
    dtype: list[str | None] = field(default_factory=lambda: [None])  # None: per device
    attn: list[str] = field(default_factory=lambda: list(DEFAULT_ATTN))
    repeat: int = 1
    device: str = "auto"
    seed: int = 0
    allow_download: bool = False
    allow_pickle: bool = False

    @classmethod
    def of_catalogue(cls, names: Sequence[str], **axes: Any) -> Axes:
        """Axes over catalogue models: Axes.of_catalogue(["opt-125m"], tokens=[20])."""
        return cls(models=[ModelRef(name) for name in names], **axes)

    def model_refs(self) -> list[ModelRef]:
        """The model axis, catalogue names made canonical, duplicates dropped."""
        refs = [
            replace(ref, name=lookup(ref.name).name) if ref.source == "architecture" else ref
            for ref in self.models
        ]
        return list(dict.fromkeys(refs))

    def check_values(self) -> None:
        """Each value of each axis on its own, before any combination is made."""
        if not self.models:
            raise UsageError("name the models to sweep: --models opt-125m,opt-1.3b (or --config)")
        for flag, values in (
            ("--tokens", self.tokens),
            ("--prompt-tokens", self.prompt_tokens),
            ("--batch", self.batch),
        ):
            if not values or any(not isinstance(v, int) or v <= 0 for v in values):
                raise UsageError(f"{flag}: every value must be a positive whole number: {values}")
        for value in self.dtype:
            if value is not None and value not in DTYPES:
                choose = ", ".join(DTYPES)
                raise UsageError(f"--dtype: unknown dtype {value!r}; choose from {choose}")
        for value in self.attn:
            if value not in ATTENTION:
                choose = ", ".join(ATTENTION)
                raise UsageError(f"--attn: unknown attention {value!r}; choose from {choose}")
        if self.repeat <= 0:
            raise UsageError(f"--repeat must be positive, got {self.repeat}")
        check_device(self.device)

    def _spec(
        self, ref: ModelRef, tokens: int, prompt: int, batch: int, dtype: str | None, attn: str
    ) -> RunSpec:
        return RunSpec(
            model=ref.name,
            source=ref.source,
            path=ref.path,
            tokens=tokens,
            prompt_tokens=prompt,
            batch=batch,
            dtype=dtype,
            attn=attn,
            device=self.device,
            seed=self.seed,
            allow_download=self.allow_download,
            allow_pickle=self.allow_pickle,
        )

    def plan(self) -> tuple[list[Cell], list[str]]:
        """(cells to run, one line for each combination left out).

        A combination whose prompt plus new tokens exceed the model's positions
        is left out with a note (the grid is a product: `--tokens 20,2000
        --prompt-tokens 8,2000` has one such cell); every other problem is a
        UsageError, raised before anything runs.
        """
        self.check_values()
        specs: list[RunSpec] = []
        left_out: list[str] = []
        for ref in self.model_refs():
            limit = _positions(self._spec(ref, 1, 1, 1, None, "sdpa"))
            for tokens in self.tokens:
                for prompt in self.prompt_tokens:
                    if limit is not None and prompt + tokens > limit:
                        left_out.append(
                            f"{ref.name}: prompt {prompt} + {tokens} new tokens exceeds its "
                            f"{limit} positions"
                        )
                        continue
                    for batch in self.batch:
                        for dtype in self.dtype:
                            for attn in self.attn:
                                spec = self._spec(ref, tokens, prompt, batch, dtype, attn)
                                validate(spec)
                                specs.append(spec)
        left_out = list(dict.fromkeys(left_out))
        if not specs:
            raise UsageError(f"no cell can run: {left_out[0]}" if left_out else "no cells to run")
        cells = [
            Cell(index=rep * len(specs) + i + 1, repeat=rep + 1, spec=replace(spec))
            for rep in range(self.repeat)
            for i, spec in enumerate(specs)
        ]
        return cells, left_out

    def cells(self) -> list[Cell]:
        return self.plan()[0]

    def varying(self) -> list[str]:
        """The axes besides model, tokens and attn that take more than one value."""
        axes = {"prompt_tokens": self.prompt_tokens, "batch": self.batch, "dtype": self.dtype}
        return [name for name, values in axes.items() if len(values) > 1]

    def command(self) -> str:
        """The command that repeats this sweep (output flags aside)."""
        parts = ["vramtui", "bench"]

        def add(flag: str, values: Sequence[object], default: Sequence[object] = ()) -> None:
            if values and list(values) != list(default):
                parts.extend([flag, ",".join(str(v) for v in values)])

        for flag, source in (
            ("--models", "architecture"),
            ("--config", "config"),
            ("--checkpoint", "checkpoint"),
        ):
            add(flag, [r.path or r.name for r in self.models if r.source == source])
        add("--tokens", self.tokens)
        add("--prompt-tokens", self.prompt_tokens, DEFAULT_PROMPT_TOKENS)
        add("--batch", self.batch, DEFAULT_BATCH)
        add("--dtype", [d for d in self.dtype if d is not None])
        add("--attn", self.attn, DEFAULT_ATTN)
        add("--repeat", [self.repeat], [1])
        add("--device", [self.device], ["auto"])
        add("--seed", [self.seed], [0])
        parts += ["--allow-download"] if self.allow_download else []
        parts += ["--allow-pickle"] if self.allow_pickle else []
        return shlex.join(parts)


def _positions(spec: RunSpec) -> int | None:
    if spec.source == "architecture":
        return lookup(spec.model).positions
    config = load_config_source(spec)
    return max_positions(config) if config else None


# ---- one cell's figures --------------------------------------------------------------


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
    oom_requested_bytes: int | None = None
    oom_held_bytes: int | None = None
    notices: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

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
    def from_session(cls, cell: Cell, session: Session) -> CellResult:
        s = session.summary()
        env = s["environment"]
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
        backend = env.get("backend")
        dtype = (
            session.loaded.dtype
            if session.loaded
            else (resolve_dtype(cell.spec.dtype, backend) if backend else cell.spec.dtype)
        )
        return cls(
            cell=cell,
            status=s["status"],
            failure_kind=failure.get("kind"),
            failure_message=failure.get("message"),
            failure_phase=failure.get("phase"),
            failure_token=failure.get("token"),
            engine_pid=env.get("engine_pid"),
            dtype=dtype,
            params=params,
            weights_bytes=s["weights_bytes"],
            peak_allocated_bytes=peak_allocated,
            peak_reserved_bytes=s["peak_reserved_bytes"],
            peak_nvml_process_bytes=nvml_peak,
            peak_nvml_device_used_bytes=s["peak_nvml_device_used_bytes"],
            bytes_per_param=round(base / params, 4) if base and params else None,
            bytes_per_param_basis=basis if base and params else None,
            tokens_generated=s["tokens_generated"],
            tokens_per_s=s["tokens_per_s"] if completed else None,
            decode_tokens_per_s=s["decode_tokens_per_s"] if completed else None,
            load_s=timings.get("load_s") or (session.loaded.load_s if session.loaded else None),
            generate_s=timings.get("generate_s"),
            kv_cache_bytes_final=s["kv_cache_bytes_final"],
            oom_requested_bytes=failure.get("requested_bytes"),
            oom_held_bytes=failure.get("held_bytes"),
            notices=list(s["notices"]),
            environment=dict(env),
        )

    @classmethod
    def skipped(cls, cell: Cell, reason: str) -> CellResult:
        return cls(cell=cell, status="skipped", failure_message=reason)


def max_present(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# ---- running -------------------------------------------------------------------------

RecorderFactory = Callable[[RunSpec, "dict[str, str] | None"], Recorder]
CellEnv = Callable[[Cell], "dict[str, str] | None"]


def default_recorder(spec: RunSpec, extra_env: dict[str, str] | None) -> Recorder:
    return Recorder(spec, extra_env=extra_env)


class Sweep:
    """Run cells one at a time, each in its own engine process.

    A cell that fails (out of memory, crash, error) is recorded and the sweep
    goes on. Two failures end it early: `cancel()` (the running cell ends
    'cancelled'), and a usage failure before the engine has named its device
    (a device that is not there fails every cell alike; `aborted` says why).
    A usage failure after that (a config transformers cannot build) skips the
    rest of that model's cells.

    `cell_env` adds environment variables to one cell's engine (the engine's
    test hooks); it is for tests, not a user-facing option.
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        *,
        make_recorder: RecorderFactory = default_recorder,
        cell_env: CellEnv | None = None,
        on_cell_start: Callable[[Cell, Session], None] | None = None,
        on_cell_done: Callable[[CellResult], None] | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> None:
        self.cells = list(cells)
        self.make_recorder = make_recorder
        self.cell_env = cell_env
        self.on_cell_start = on_cell_start
        self.on_cell_done = on_cell_done
        self.on_event = on_event
        self.results: list[CellResult] = []
        self.aborted: str | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._current: Recorder | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """End the running cell and start no other. Any thread."""
        self._cancelled.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel()

    def run(self) -> list[CellResult]:
        dead_models: dict[tuple[str, str, str | None], str] = {}
        for cell in self.cells:
            if self._cancelled.is_set() or self.aborted:
                break
            reason = dead_models.get(cell.model_key)
            result = CellResult.skipped(cell, reason) if reason else self._run_cell(cell)
            if result is None:  # the recorder refused the spec: the whole sweep is wrong
                break
            self.results.append(result)
            if self.on_cell_done is not None:
                self.on_cell_done(result)
            if result.failure_kind == "usage":
                if result.environment.get("device_name") is None:
                    self.aborted = result.failure_message or "usage error"
                else:
                    why = f"{cell.spec.model} failed: {result.failure_message}"
                    dead_models[cell.model_key] = why
        return self.results

    def _run_cell(self, cell: Cell) -> CellResult | None:
        env = self.cell_env(cell) if self.cell_env else None
        try:
            recorder = self.make_recorder(replace(cell.spec), env)
        except UsageError as exc:
            self.aborted = str(exc)
            return None
        with self._lock:
            self._current = recorder
        if self._cancelled.is_set():
            recorder.cancel()
        session = recorder.session
        if self.on_cell_start is not None:
            self.on_cell_start(cell, session)
        try:
            session = recorder.run(self.on_event)
        except Exception as exc:  # noqa: BLE001 - one cell's failure never ends the sweep
            session.fail(ev.Failed("error", f"{type(exc).__name__}: {exc}", session.current_phase))
            engine = getattr(recorder, "engine", None)
            if engine is not None:
                engine.close()
        finally:
            with self._lock:
                self._current = None
        if not session.finished:  # Recorder always ends it; anything else is a crash
            token = session.tokens_done - 1 if session.tokens_done else None
            why = "the run ended without a result"
            session.fail(ev.Failed("crashed", why, session.current_phase, token))
        return CellResult.from_session(cell, session)


def run_sweep(
    cells: Sequence[Cell],
    on_cell_done: Callable[[CellResult], None] | None = None,
    make_recorder: RecorderFactory = default_recorder,
    **options: Any,
) -> list[CellResult]:
    """Run every cell (see `Sweep`); `on_cell_done` sees each result as it finishes."""
    return Sweep(cells, make_recorder=make_recorder, on_cell_done=on_cell_done, **options).run()
