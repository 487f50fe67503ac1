"""`vramtui bench`'s grid: the axes of a sweep and the cells they make.

No torch, no textual. `Axes` (the flags) expands into `Cell`s, each resolved
with `vramtui.runspec.resolve` before anything runs; `sweep.runner.Sweep` runs
them one after another (a fresh engine process per cell, so no cell inherits
another's allocator cache or CUDA context) and hands back one
`sweep.results.CellResult` per cell as it finishes.

Order: repeats are the outermost loop (every configuration once, then again),
so an interrupted sweep holds each configuration at least once as early as
possible; within a pass models, then token budgets, prompt lengths, batch
sizes, dtypes, attention kernels and weight quantizations.

Repeats in the markdown table: one row per configuration; the memory columns
show the largest figure over its completed repeats (what a card must hold),
tok/s the median with the range (min–max). The CSV keeps every repeat.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from vramtui.errors import UsageError
from vramtui.models.catalogue import lookup
from vramtui.runspec import ATTENTION, DTYPES, DeviceList, ResolvedRun, RunSpec, resolve
from vramtui.runspec.device_choice import check_device
from vramtui.runspec.quant import check_quant
from vramtui.runspec.resolve import read_model
from vramtui.runspec.sources import max_positions

T = TypeVar("T")

DEFAULT_TOKENS = (200,)
DEFAULT_PROMPT_TOKENS = (8,)
DEFAULT_BATCH = (1,)
DEFAULT_ATTN = ("sdpa",)
DEFAULT_QUANT = ("none",)


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
    """One run of the sweep: its place (1-based), its repeat (1-based) and its run."""

    index: int
    repeat: int
    run: ResolvedRun

    @property
    def spec(self) -> RunSpec:
        return self.run.spec

    @property
    def key(self) -> tuple[Any, ...]:
        """The configuration, the same for every repeat of it."""
        s = self.spec
        return (s.model, s.source, s.path, s.tokens, s.prompt_tokens, s.batch, s.dtype, s.attn,
                s.quant)  # fmt: skip

    @property
    def model_key(self) -> tuple[str, str, str | None]:
        return (self.spec.model, self.spec.source, self.spec.path)


@dataclass
class Axes:
    """Every value of every axis; `cells()` is their product, times `repeat`.

    `base` holds what every cell shares (device, seed, the source flags); it is
    built from the command line by the same builder as `vramtui run`'s spec."""

    models: list[ModelRef] = field(default_factory=list)
    tokens: list[int] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    prompt_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_PROMPT_TOKENS))
    batch: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH))
    dtype: list[str | None] = field(default_factory=lambda: [None])  # None: per device
    attn: list[str] = field(default_factory=lambda: list(DEFAULT_ATTN))
    quant: list[str] = field(default_factory=lambda: list(DEFAULT_QUANT))  # --quant
    repeat: int = 1
    base: RunSpec = field(default_factory=RunSpec)

    @classmethod
    def of_catalogue(cls, names: Sequence[str], **axes: Any) -> Axes:
        """Axes over catalogue models: Axes.of_catalogue(["opt-125m"], tokens=[20]);
        `device=` sets the base spec's device."""
        base = RunSpec(device=axes.pop("device", "auto"))
        return cls(models=[ModelRef(name) for name in names], base=base, **axes)

    def model_refs(self) -> list[ModelRef]:
        """The model axis, catalogue names made canonical, duplicates dropped."""
        refs = [
            replace(ref, name=lookup(ref.name).name) if ref.source == "architecture" else ref
            for ref in self.models
        ]
        return list(dict.fromkeys(refs))

    def check_values(self, devices: DeviceList) -> None:
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
        if not self.quant:
            raise UsageError("--quant: name at least one: none,int8,nf4")
        for value in self.quant:
            check_quant(value)
        if self.base.double_quant and not set(self.quant) & {"nf4", "fp4"}:
            raise UsageError("--double-quant applies to bitsandbytes 4-bit (nf4, fp4) cells")
        if self.repeat <= 0:
            raise UsageError(f"--repeat must be positive, got {self.repeat}")
        check_device(self.base.device, devices)

    def _spec(
        self,
        ref: ModelRef,
        tokens: int,
        prompt: int,
        batch: int,
        dtype: str | None,
        attn: str,
        quant: str = "none",
    ) -> RunSpec:
        return replace(
            self.base,
            model=ref.name,
            source=ref.source,
            path=ref.path,
            tokens=tokens,
            prompt_tokens=prompt,
            batch=batch,
            dtype=dtype,
            attn=attn,
            quant=quant,
            double_quant=self.base.double_quant and quant in ("nf4", "fp4"),
        )

    def plan(self, devices: DeviceList | None = None) -> tuple[list[Cell], list[str]]:
        """(cells to run, one line for each combination left out).

        A combination whose prompt plus new tokens exceed the model's positions
        is left out with a note (the grid is a product: `--tokens 20,2000
        --prompt-tokens 8,2000` has one such cell); every other problem is a
        UsageError, raised before anything runs. `devices`: the devices there are
        (asked of NVML when not given).
        """
        if devices is None:
            from vramtui.measure.device_inventory import available

            devices = available()
        self.check_values(devices)
        runs: list[ResolvedRun] = []
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
                    shapes = itertools.product(self.batch, self.dtype, self.attn, self.quant)
                    for shape in shapes:
                        runs.append(resolve(self._spec(ref, tokens, prompt, *shape), devices))
        left_out = list(dict.fromkeys(left_out))
        if not runs:
            raise UsageError(f"no cell can run: {left_out[0]}" if left_out else "no cells to run")
        cells = [
            Cell(index=rep * len(runs) + i + 1, repeat=rep + 1, run=run)
            for rep in range(self.repeat)
            for i, run in enumerate(runs)
        ]
        return cells, left_out

    def cells(self, devices: DeviceList | None = None) -> list[Cell]:
        return self.plan(devices)[0]

    def varying(self) -> list[str]:
        """The axes besides model, tokens and attn that take more than one value."""
        axes: dict[str, Sequence[object]] = {
            "prompt_tokens": self.prompt_tokens,
            "batch": self.batch,
            "dtype": self.dtype,
            "quant": self.quant,
        }
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
        add("--quant", self.quant, DEFAULT_QUANT)
        parts += ["--double-quant"] if self.base.double_quant else []
        add("--repeat", [self.repeat], [1])
        add("--device", [self.base.device], ["auto"])
        add("--seed", [self.base.seed], [0])
        parts += ["--allow-download"] if self.base.allow_download else []
        parts += ["--allow-pickle"] if self.base.allow_pickle else []
        parts += ["--cudnn-sdpa"] if self.base.cudnn_sdpa else []
        add("--cache", [self.base.cache], ["dynamic"])
        add("--cap", [self.base.cap_bytes], [None])
        return shlex.join(parts)


def _positions(spec: RunSpec) -> int | None:
    _, info, _, config = read_model(spec)
    if info is not None:
        return info.positions
    return max_positions(config) if config else None
