"""The one seam `vramtui fit` asks a peak through: a model, a workload and a setting in,
the bytes the allocator must be allowed and the terms that make them up out.

Pure Python. `GeneratePlanner` answers text generation with the estimator
(predict/estimator.py), the weights in the dtype or stored as a --quant method stores
them (predict/quantized.py): OPT from its exact record, every other model from its
trace where one is cached on disk, else from an approximate trace of its config's
numbers (predict/config_trace.py); `PlannedPeak.basis` says which. It spawns no
tracer (unless made with `may_trace`: then each shape the search asks for is traced,
a child process each, and cached) and needs no quantization library. Workloads and
precisions it does not estimate are refused in one line (`NotEstimated`) before
anything is searched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol

from vramtui.errors import UsageError
from vramtui.models.catalogue import Entry
from vramtui.predict.config_trace import config_trace
from vramtui.predict.estimator import Architecture, Estimate, estimate
from vramtui.predict.kv_replay import strided_bound
from vramtui.predict.quantized import FOUR_BIT
from vramtui.predict.tracing.traces import trace_model
from vramtui.runspec.quant import method

WORKLOADS = ("generate", "lora", "qlora", "full")
BASES = ("exact", "traced", "interpolated", "approximate")


class NotEstimated(UsageError):
    """A workload or precision the planner cannot estimate (yet): exit 2, one line."""


@dataclass(frozen=True)
class Setting:
    """What is asked of the card: a workload at a precision, a context and a batch."""

    workload: str = "generate"
    quant: str = "none"
    prompt_tokens: int = 8
    tokens: int = 2000  # new tokens; the context is prompt + tokens
    batch: int = 1
    dtype: str = "float16"
    attn: str = "sdpa"
    grow: str = "tokens"  # what a longer context lengthens: the new tokens or the prompt
    double_quant: bool = False  # nf4 / fp4: the absmax quantized again
    # Generation over many models: the cache's segments replayed in strides where its
    # tensors have segments of their own, within kv_replay.strided_bound of the exact
    # replay (the peak's spread_bytes), not step by step.
    strided: bool = False

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.tokens

    @property
    def held(self) -> int:
        """The part of the context a search over contexts keeps."""
        return self.prompt_tokens if self.grow == "tokens" else self.tokens

    def with_context(self, context: int) -> Setting:
        if self.grow == "prompt":
            return replace(self, prompt_tokens=context - self.tokens)
        return replace(self, tokens=context - self.prompt_tokens)

    def with_batch(self, batch: int) -> Setting:
        return replace(self, batch=batch)


@dataclass(frozen=True)
class PlannedPeak:
    """The most a run needs of the caching allocator (the CUDA context is the card's),
    and the terms that make it up."""

    need_bytes: int  # what the allocator must be allowed for the run to complete
    weights_bytes: int
    kv_cache_bytes: int  # at the end of the run
    activation_bytes: int  # the largest step's transients
    slack_bytes: int  # reserved beyond allocated, at the peak
    basis: str  # exact | traced | approximate (see BASES)
    # 0: the cache's segments were replayed (or the cache balloons, where the replay
    # does not change the need). Else the need is the fragmentation model's or a strided
    # replay's, and the replayed need lies within need_bytes -/+ spread_bytes.
    spread_bytes: int = 0
    # Terms of other workloads beside the four (fine-tuning: ("gradients", n),
    # ("optimizer states", n)); they take part in `binding` as the others do.
    other_terms: tuple[tuple[str, int], ...] = ()
    # Quantized weights (--quant): (part, bytes) of weights_bytes, e.g. ("packed", n),
    # ("quantization state", n), ("kept in float16", n); empty for unquantized weights.
    weights_split: tuple[tuple[str, int], ...] = ()
    load_peak_bytes: int = 0  # allocated while the model loads (quantizing: its copies)

    @property
    def replayed(self) -> bool:
        return self.spread_bytes == 0

    def binding(self, usable_bytes: int) -> str:
        """The term that decides: the weights where they alone do not fit, then the
        load (a quantizer's working copies beside the weights), else the largest of the
        terms that grow with the context and the batch."""
        if self.weights_bytes > usable_bytes:
            return "weights"
        if self.load_peak_bytes > usable_bytes:
            return "loading"
        grows = {
            "kv cache": self.kv_cache_bytes,
            "activations": self.activation_bytes,
            "allocator slack": self.slack_bytes,
            **dict(self.other_terms),
        }
        return max(grows, key=lambda k: grows[k])


class Planner(Protocol):
    """What `vramtui fit` needs of an estimator."""

    def check(self, workload: str, quant: str) -> None:
        """Raise NotEstimated (one line) for what this planner cannot estimate."""

    def positions(self, model: Entry) -> int:
        """The most positions (prompt + new tokens) the model takes."""

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        """The planned peak of `model` at `setting` (already `check`ed); `exact=False`
        may answer a cheaper figure with its spread (PlannedPeak.spread_bytes)."""


class GeneratePlanner:
    """Generation, the weights unquantized or quantized, through the estimator;
    `may_trace`: models other than OPT traced at every shape asked (`vramtui fit
    --trace`), else read from cached traces or approximated."""

    def __init__(self, may_trace: bool = False) -> None:
        self.may_trace = may_trace

    def check(self, workload: str, quant: str) -> None:
        if workload not in WORKLOADS:
            choose = ", ".join(WORKLOADS)
            raise UsageError(f"unknown --workload {workload!r}; choose from {choose}")
        if workload != "generate":
            raise NotEstimated(f"--workload {workload} needs the training estimate")
        method(quant)  # an unknown name: one line

    def positions(self, model: Entry) -> int:
        return model.opt.positions if model.opt else model.positions or 2048

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        return _peak(model, setting, exact, self.may_trace)


def architecture(
    model: Entry, setting: Setting, positions: int, may_trace: bool = False
) -> tuple[Architecture, str]:
    """What the estimator reads `model` from at `setting`, and how exact that is:
    traced now where `may_trace` (OPT too: its trace replays the prefill request by
    request, where its record sizes the prefill's transients with a fitted factor),
    else OPT's record, or a trace only where one is cached."""
    if model.opt is not None and not may_trace:
        return model.opt, "exact"
    s = setting
    traced = trace_model(
        model.name, dict(model.config), positions, prompt=s.prompt_tokens, batch=s.batch,
        dtype=s.dtype, attn=s.attn, backend="cuda", only_cached=not may_trace,
    )  # fmt: skip
    if traced is not None:
        return traced, "traced"
    approx = config_trace(
        model.name, model.config, model.params, positions, prompt=s.prompt_tokens,
        batch=s.batch, dtype=s.dtype, attn=s.attn, backend="cuda",
    )  # fmt: skip
    return approx, "approximate"


# How far the replayed need can lie from the fragmentation model's, as a share of what
# the run allocates beyond its weights, and a floor: over 828 cells of OPT records and
# config traces (9 models, sdpa and eager, batch 1-4, prompt 8 and 512, 1-8000 new
# tokens, ballooning caches included) the replayed need lay between 0.28 x below and
# 0.31 x above (benchmarks/fit_spread.py, results/fit_speed/fit_spread-cpu-dev.json).
SPREAD_SHARE = 2.5
SPREAD_FLOOR = 64 * 1024 * 1024


@lru_cache(maxsize=4096)
def _peak(model: Entry, setting: Setting, exact: bool, may_trace: bool = False) -> PlannedPeak:
    positions = GeneratePlanner().positions(model)
    arch, basis = _architecture(model, setting, positions, may_trace)
    s = setting
    # The replay of the cache's segments is the estimate's one costly part: it runs where
    # `exact` asks for it. What must fit is the segments in use at once (where memory
    # runs out the allocator gives the cached ones back: a ballooning cache's too). A
    # ballooning cache's replay steps through many positions: over many models
    # (`strided`) its need is the fragmentation model's, as the replay's lies near it.
    est = estimate(
        arch, prompt_tokens=s.prompt_tokens, tokens=s.tokens, batch=s.batch, dtype=s.dtype,
        attn=s.attn, replay_cache=False, quant=s.quant,
        double_quant=s.double_quant and s.quant in FOUR_BIT,
    )  # fmt: skip
    if est.cache_balloons and s.strided:
        return planned(est, basis)
    if not exact:
        dynamic = max(0, est.peak_allocated_bytes - est.weights_bytes)
        return planned(est, basis, int(SPREAD_SHARE * dynamic) + SPREAD_FLOOR)
    if s.strided:
        bound = strided_bound(est.calibration.rules, model.layers)
        return planned(est.varied(replay_cache=True, strided_replay=True), basis, bound)
    return planned(est.varied(replay_cache=True), basis)


@lru_cache(maxsize=1024)
def _architecture(
    model: Entry, setting: Setting, positions: int, may_trace: bool = False
) -> tuple[Architecture, str]:
    # one architecture per shape: the tokens and the precision do not change it
    shape = replace(
        setting, tokens=1, grow="tokens", quant="none", double_quant=False, strided=False
    )
    return architecture(model, shape, positions, may_trace)


def planned(est: Estimate, basis: str, spread: int = 0) -> PlannedPeak:
    """A PlannedPeak from an estimate: what must fit, less the estimator's own context."""
    need = est.required_bytes - est.context_bytes
    return PlannedPeak(
        need_bytes=need,
        weights_bytes=est.weights_bytes,
        kv_cache_bytes=est.kv_cache_bytes,
        activation_bytes=est.transient_bytes,
        slack_bytes=max(0, need - est.peak_allocated_bytes),
        basis=basis,
        spread_bytes=spread,
        weights_split=weights_split(est),
        load_peak_bytes=est.load_peak_bytes,
    )


def weights_split(est: Estimate) -> tuple[tuple[str, int], ...]:
    """The quantized weights' parts (empty for unquantized weights)."""
    if est.quant == "none":
        return ()
    return (
        ("packed", est.weights_packed_bytes),
        ("quantization state", est.weights_state_bytes),
        (f"kept in {est.dtype}", est.weights_full_bytes),
    )
