"""The catalogue's strided KV replay: within kv_replay.strided_bound of the replay step by
step on catalogue cells, asked for only over many models, its rows marked `~`, and the
answers it finds ones the exact need allows within the bound. Contexts are worked out
here from each cell's own cache row."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from helpers import catalogue_architecture, replay_args, run_cli

from vramtui.models.catalogue import CATALOGUE, Entry
from vramtui.predict import kv_replay, planner
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.estimator import estimate
from vramtui.predict.fit_search import Budget, FitRow, Search
from vramtui.predict.kv_replay import KvGrowth, kv_cache_replay, strided_bound
from vramtui.predict.planner import GeneratePlanner, PlannedPeak, Setting

RULES = DEFAULT.rules
GiB = 1024**3
# (model, precision, batch): a quantized load's large free blocks (the 32B models the
# catalogue's search spends its replays on), int8, an unquantized load, an OPT record
CELLS = [
    ("qwen2.5-32b", "nf4", 1),
    ("qwen3-32b", "nf4", 2),
    ("llama-3.1-8b", "nf4", 2),
    ("qwen3-8b", "int8", 2),
    ("gemma-2-2b", "none", 4),
    ("opt-1.3b", "nf4", 4),
]


def _lasts(kv: KvGrowth, positions: int) -> list[int]:
    """Last positions in the small pool, in shared 20 MiB segments, and from the first
    whose tensors have segments of their own to 14 MiB past it: the strided replay
    strides in the first and the last."""
    row = kv.bytes_per_position
    first = RULES.large_alloc_min // row + 1
    lasts = [RULES.small_block_max // 2 // row + 3, 5 * 2**20 // row + 1]
    lasts += [first + 3, first + (5 * 2**20) // row + 7, first + (14 * 2**20) // row + 1]
    return [last for last in lasts if kv.prompt < last <= positions]


@pytest.mark.parametrize("cell", CELLS, ids=["-".join(map(str, c)) for c in CELLS])
def test_the_strided_replay_lies_within_its_bound_of_the_exact_one(
    cell: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, quant, batch = cell
    args, kwargs = replay_args(name, quant, batch, monkeypatch)
    rules, free, first, kv, *rest = args
    assert isinstance(kv, KvGrowth)
    lasts = _lasts(kv, GeneratePlanner().positions(CATALOGUE[name]))
    assert len(lasts) == 5, "every cell reaches tensors of a segment of their own"
    bound = strided_bound(RULES, CATALOGUE[name].layers)
    kv_replay.clear_caches()
    for last in lasts:
        grown = replace(kv, tokens=last - kv.prompt + 1)
        exact = kv_cache_replay(rules, free, first, grown, *rest, **kwargs).grown
        strided = kv_cache_replay(
            rules,
            free,
            first,
            grown,
            *rest,
            **{**kwargs, "strided": True},
        ).grown
        assert abs(strided - exact) <= bound, (last, strided - exact)
    kv_replay.clear_caches()


def test_the_strided_replay_steps_fewer_times(monkeypatch: pytest.MonkeyPatch) -> None:
    args, kwargs = replay_args("qwen2.5-32b", "nf4", 1, monkeypatch)
    rules, free, first, kv, *rest = args
    assert isinstance(kv, KvGrowth)
    grown = replace(kv, tokens=_lasts(kv, 10**6)[-1] - kv.prompt + 1)
    steps: dict[bool, int] = {}
    real = kv_replay._Replay.step
    for strided in (False, True):
        count = [0]

        def step(self: kv_replay._Replay, positions: int, count: list[int] = count) -> None:
            count[0] += 1
            real(self, positions)

        kv_replay.clear_caches()
        with monkeypatch.context() as patched:
            patched.setattr(kv_replay._Replay, "step", step)
            kv_cache_replay(rules, free, first, grown, *rest, **{**kwargs, "strided": strided})
        steps[strided] = count[0]
    kv_replay.clear_caches()
    # in the small pool and where tensors have their own segments (14 MiB of growth
    # here): a step per position (512 + 7168 at 2 KiB a position) against one per
    # 256 KiB and one per MiB; both stride while they share 20 MiB segments
    assert steps[True] * 100 < steps[False], steps


def test_a_strided_peak_carries_the_bound_as_its_spread() -> None:
    entry = CATALOGUE["qwen3-32b"]
    setting = Setting(quant="nf4", tokens=7000)
    exact = GeneratePlanner().peak(entry, setting)
    strided = GeneratePlanner().peak(entry, replace(setting, strided=True))
    bound = strided_bound(RULES, entry.layers)
    assert exact.replayed and not strided.replayed
    assert strided.spread_bytes == bound
    assert abs(strided.need_bytes - exact.need_bytes) <= bound


class _Recording:
    """GeneratePlanner, the settings of its replayed peaks kept."""

    def __init__(self) -> None:
        self.inner = GeneratePlanner()
        self.replayed: list[Setting] = []

    def check(self, workload: str, quant: str) -> None:
        self.inner.check(workload, quant)

    def positions(self, model: Entry) -> int:
        return self.inner.positions(model)

    def peak(self, model: Entry, setting: Setting, exact: bool = True) -> PlannedPeak:
        if exact:
            self.replayed.append(setting)
        return self.inner.peak(model, setting, exact)


BUDGET = Budget(24 * GiB, 0, 0)  # qwen2.5-32b in nf4: its largest context is the replay's


def _row(exact_rows: bool, strided: bool = True) -> tuple[FitRow, _Recording]:
    recording = _Recording()
    search = Search(recording, BUDGET, exact_rows=exact_rows, strided=strided)
    return search.row(CATALOGUE["qwen2.5-32b"], Setting(quant="nf4")), recording


def test_only_a_search_over_many_models_strides_its_replays() -> None:
    # fit asks for strided replays over many models; exact rows (a few models) win, and
    # a search not asked to (the app's, the docs' table) replays every step
    row, many = _row(exact_rows=False)
    _, few = _row(exact_rows=True)
    _, unasked = _row(exact_rows=False, strided=False)
    assert many.replayed and all(s.strided for s in many.replayed)
    assert few.replayed and not any(s.strided for s in few.replayed)
    assert unasked.replayed and not any(s.strided for s in unasked.replayed)
    assert row.setting == Setting(quant="nf4")  # the row keeps the asked setting


def _over(row: FitRow, setting: Setting) -> int:
    entry = CATALOGUE[row.model]
    return GeneratePlanner().peak(entry, setting).need_bytes - row.usable_bytes


def _allowed(row: FitRow, answer: int, at: Callable[[int], Setting], bound: int) -> bool:
    """The exact need at `answer` at most the bound over the budget, one step further
    at most the bound under it."""
    return _over(row, at(answer)) <= bound and _over(row, at(answer + 1)) > -bound


def test_over_many_models_a_ballooning_caches_answer_is_never_above_the_exact_one() -> None:
    strided, _ = _row(exact_rows=False)
    exact, _ = _row(exact_rows=True)
    s = strided.setting
    assert strided.max_context > s.context  # decided past the asked context
    assert _allowed(exact, exact.max_context, s.with_context, 0)
    assert _allowed(exact, exact.max_batch, s.with_batch, 0)
    # past 16K positions the cache balloons: over many models its need is the
    # fragmentation model's, not replayed (the segments in use would be replayed position
    # by position), and that answer is never more than the exact one
    at = estimate(
        catalogue_architecture("qwen2.5-32b", 1), prompt_tokens=8,
        tokens=strided.max_context - 8, quant="nf4", replay_cache=False,
    )  # fmt: skip
    assert at.cache_balloons
    assert s.context < strided.max_context <= exact.max_context
    assert strided.max_batch <= exact.max_batch  # at batch 8 too


def _fit_json(capsys: pytest.CaptureFixture[str], *flags: str) -> list[dict[str, object]]:
    planner._peak.cache_clear()
    kv_replay.clear_caches()
    code, out, err = run_cli(capsys, "fit", *flags, "--json")
    assert code == 0, err
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def test_fit_over_many_models_marks_a_strided_row_and_one_model_replays_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --filter qwen matches more than EXACT_ROWS models; qwen2.5-32b's row at a context
    # near its line (at batch 1 on 24 GB) is planned by the strided replay
    flags = ("--gpu", "rtx-4090", "--quant", "nf4", "--context", "7000")
    many = {r["model"]: r for r in _fit_json(capsys, *flags, "--filter", "qwen")}
    (one,) = _fit_json(capsys, *flags, "--model", "qwen2.5-32b")
    assert many["qwen2.5-32b"]["replayed"] is False
    assert one["replayed"] is True
    need = many["qwen2.5-32b"]["need_bytes"]
    assert isinstance(need, int) and isinstance(one["need_bytes"], int)
    assert abs(need - one["need_bytes"]) <= strided_bound(RULES, CATALOGUE["qwen2.5-32b"].layers)


@pytest.mark.parametrize("layers", [0, 2])
def test_a_cache_that_does_not_grow_replays_strided_as_exactly(layers: int) -> None:
    # sliding-window layers past their window (a traced phi-3-mini-4k at 4096
    # positions): no layer's cache grows, no bytes a position
    kv = KvGrowth(layers, 0, 8, 4088)
    kv_replay.clear_caches()
    exact = kv_cache_replay(RULES, (), (), kv, (2**20,), (2**20,)).grown
    strided = kv_cache_replay(RULES, (), (), kv, (2**20,), (2**20,), strided=True).grown
    kv_replay.clear_caches()
    assert strided == exact
