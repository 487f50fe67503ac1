"""The fit search's fast paths give the slow paths' figures to the byte: the KV replay's
one-loop churn against a malloc then a free for each tensor, the quantized weights'
shared plan and their dequantized layer by distinct shape, the cache's bytes by
distinct layer. Cells are catalogue models at precisions and contexts worked out
here from each model's own cache row."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import catalogue_architecture, replay_args, run_cli

from vramtui.models.catalogue import CATALOGUE
from vramtui.predict import kv_replay, load, planner, quantized
from vramtui.predict.allocator import CachingAllocator, Handle
from vramtui.predict.calibration import DEFAULT
from vramtui.predict.kv_replay import KvGrowth
from vramtui.predict.planner import GeneratePlanner
from vramtui.predict.run_shape import step_model

RULES = DEFAULT.rules
# (model, precision, batch): a quantized load's large free blocks, an unquantized one,
# sliding-window layers, an OPT record
CELLS = [
    ("qwen2.5-32b", "nf4", 4),
    ("qwen3-8b", "int8", 2),
    ("gemma-2-2b", "nf4", 4),
    ("llama-3.2-1b", "none", 8),
    ("opt-1.3b", "nf4", 4),
]


def _contexts(kv: KvGrowth, positions: int) -> list[int]:
    """Last positions where the tensors have segments of their own (10 MiB on) and no
    more than 22 MiB, so every step is replayed: the regime the churn serves."""
    row = kv.bytes_per_position
    first = RULES.large_alloc_min // row + 1
    lasts = [first + 5, (RULES.large_alloc_min + 4 * 2**20) // row, 18 * 2**20 // row]
    return [last for last in lasts if kv.prompt < last < positions]


def _step_one_by_one(self: kv_replay._Replay, positions: int) -> None:
    """The replay's step as it was: a malloc, then the old tensor's free, one by one."""
    nbytes = positions * self.kv.bytes_per_position
    for j, old in enumerate(self.live):
        self.live[j] = self.pool.malloc(nbytes)
        self.pool.free(old)


@pytest.mark.parametrize("cell", CELLS, ids=["-".join(map(str, c)) for c in CELLS])
def test_the_churn_replay_reserves_what_one_malloc_and_free_at_a_time_does(
    cell: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, quant, batch = cell
    args, kwargs = replay_args(name, quant, batch, monkeypatch)
    rules, free, first, kv, *rest = args
    assert isinstance(kv, KvGrowth)
    contexts = _contexts(kv, GeneratePlanner().positions(CATALOGUE[name]))
    assert contexts, "every cell reaches tensors of a segment of their own"
    fast, slow = [], []
    for last in contexts:
        grown = replace(kv, tokens=last - kv.prompt + 1)
        kv_replay.clear_caches()
        fast.append(kv_replay.kv_cache_replay(rules, free, first, grown, *rest, **kwargs).grown)
    with monkeypatch.context() as patched:
        patched.setattr(kv_replay._Replay, "step", _step_one_by_one)
        for last in contexts:
            grown = replace(kv, tokens=last - kv.prompt + 1)
            kv_replay.clear_caches()
            slow.append(kv_replay.kv_cache_replay(rules, free, first, grown, *rest, **kwargs).grown)
    kv_replay.clear_caches()
    assert fast == slow


def test_churn_leaves_the_pool_as_a_malloc_then_a_free_for_each_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args, _ = replay_args("qwen2.5-32b", "nf4", 1, monkeypatch)
    rules, free, first, kv = args[:4]
    assert isinstance(kv, KvGrowth)
    pool = CachingAllocator(rules, free)  # type: ignore[arg-type]
    for nbytes in first:  # type: ignore[attr-defined]
        pool.malloc(nbytes)
    row = kv.bytes_per_position
    live: list[Handle] = [pool.malloc(3 * 2**20) for _ in range(2 * kv.layers)]
    twin, twin_live = pool.copy(), live[:]
    # across both pools, shared 20 MiB segments and segments of their own
    for nbytes in (2**19, 3 * 2**20, 9 * 2**20, RULES.large_alloc_min + row, 15 * 2**20):
        pool.churn(live, nbytes)
        for j, old in enumerate(twin_live):
            twin_live[j] = twin.malloc(nbytes)
            twin.free(old)
        assert live == twin_live
        assert pool.free_large_blocks() == twin.free_large_blocks()
        assert pool.free_sizes(small=True) == twin.free_sizes(small=True)
        got = (pool.allocated, pool.reserved, pool.peak_allocated)
        assert got == (twin.allocated, twin.reserved, twin.peak_allocated)


def _fit_json(capsys: pytest.CaptureFixture[str], *flags: str) -> list[dict[str, object]]:
    for cached in (planner._peak, planner._architecture, load.load_items, quantized._plan):
        cached.cache_clear()
    kv_replay.clear_caches()
    code, out, err = run_cli(capsys, "fit", *flags, "--json")
    assert code == 0, err
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def test_fit_rows_are_the_same_with_the_replay_stepped_one_tensor_at_a_time(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the largest context of a 32B model in nf4 on a 24 GB card is decided by the replay
    flags = ("--gpu", "rtx-4090", "--model", "qwen2.5-32b", "--quant", "nf4")
    fast = _fit_json(capsys, *flags)
    with monkeypatch.context() as patched:
        patched.setattr(kv_replay._Replay, "step", _step_one_by_one)
        slow = _fit_json(capsys, *flags)
    assert fast == slow
    assert fast[0]["max_context"] > 2008  # the search went past the asked context


@pytest.mark.parametrize("cell", CELLS, ids=["-".join(map(str, c)) for c in CELLS])
def test_a_forward_dequantizes_the_largest_of_every_converted_layer(
    cell: tuple[str, str, int],
) -> None:
    name, quant, batch = cell
    if quant == "none":
        quant = "int8"
    plan = quantized.quant_plan(catalogue_architecture(name, batch), quant, False, 2)
    for rows in (1, 5, batch * 8, 4096):
        every = (plan._layer((lin.rows, lin.cols), rows) for lin in plan.weights.converted)
        assert plan.dequant_tensors(rows) == max(every, key=sum, default=())


def test_a_models_traces_at_other_batches_share_one_quantized_plan() -> None:
    plans = [
        quantized.quant_plan(catalogue_architecture("qwen3-8b", b), "nf4", False, 2) for b in (1, 3)
    ]
    assert plans[0] is plans[1]
    quantized._plan.cache_clear()
    assert quantized.quant_plan(catalogue_architecture("qwen3-8b", 2), "nf4", False, 2) == plans[0]


@pytest.mark.parametrize("name", ["gemma-2-2b", "gemma-3-1b", "qwen2.5-7b"])
def test_the_caches_bytes_by_distinct_layer_are_every_layers_sum(name: str) -> None:
    arch = catalogue_architecture(name, 2)
    steps = step_model(arch, 8, 2, "float16", "sdpa", "cuda", DEFAULT)
    layers = arch.layers
    assert isinstance(layers, tuple)
    for positions in (9, 511, 513, 4097, 20000):
        every = sum(2 * steps.block(layer.row * layer.held(positions)) for layer in layers)
        assert steps.kv(positions) == every


def test_a_rest_is_split_off_exactly_when_it_is_worth_a_block_of_its_pool() -> None:
    # large pool: a rest over 1 MiB is a block of its own, one of 1 MiB is handed out
    large, b = RULES.large_segment_bytes, RULES.block_bytes
    for rest, split in ((RULES.small_block_max + b, True), (RULES.small_block_max, False)):
        pool = CachingAllocator(RULES)
        first = pool.malloc(large - rest)
        assert pool.allocated == (large - rest if split else large)
        assert pool.free_sizes() == ([rest] if split else [])
        pool.free(first)
        assert pool.allocated == 0 and pool.free_sizes() == [large]
    # small pool: a rest of one 512 B block is kept
    pool = CachingAllocator(RULES)
    pool.malloc(RULES.small_block_max)
    pool.malloc(RULES.small_block_max - b)
    assert pool.free_sizes(small=True) == [b]
    assert pool.allocated == RULES.small_segment_bytes - b
