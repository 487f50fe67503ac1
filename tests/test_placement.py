"""Placement across devices: the flags, transformers' placement, each device predicted."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import CPU_ONLY, TINY_CONFIG, WITH_GPU, resolved, tiny_spec

from vramtui.errors import UsageError
from vramtui.models.catalogue import lookup
from vramtui.predict.estimator import estimate
from vramtui.predict.placed import estimate_placed, place_model
from vramtui.runspec import RunSpec
from vramtui.runspec.device_map import parse_max_memory

GiB = 2**30


@pytest.mark.parametrize("size", ["70GiB", "80GB", "1.5GiB", "512MiB", "24000MB", "5 GiB"])
def test_sizes_read_as_accelerate_reads_them(size: str) -> None:
    from accelerate.utils import convert_file_size_to_int

    assert parse_max_memory(f"0={size}") == {0: convert_file_size_to_int(size)}


def test_max_memory_orders_gpus_first_then_the_cpu() -> None:
    parsed = parse_max_memory("cpu=200GiB, 1=80GiB,cuda:0=70GiB")
    assert list(parsed) == [0, 1, "cpu"]
    assert parsed == {0: 70 * GiB, 1: 80 * GiB, "cpu": 200 * GiB}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0=80", "a size needs a unit"),
        ("0=eighty GiB", "not a size"),
        ("tpu=80GiB", "name GPUs by number"),
        ("disk=80GiB", "name GPUs by number"),
        ("0=80GiB,0=70GiB", "twice"),
        ("80GiB", "DEVICE=SIZE"),
        ("", "empty"),
    ],
)
def test_bad_max_memory_is_one_clear_error(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_max_memory(text)
    assert needle in str(err.value) and err.value.field == "max_memory"


def test_a_gpu_that_is_not_there_is_refused_before_the_run() -> None:
    spec = RunSpec(model="opt-125m", device_map="auto", max_memory="0=70GiB,1=80GiB")
    with pytest.raises(UsageError, match="names GPU 1, which is not here"):
        resolved(spec, WITH_GPU)
    assert resolved(RunSpec(model="opt-125m", device_map="auto", max_memory="0=70GiB"),
                    WITH_GPU).device == "cuda:0"  # fmt: skip


def test_a_map_that_cannot_hold_the_model_is_refused() -> None:
    spec = RunSpec(model="opt-13b", device_map="auto", max_memory="0=12GiB,cpu=10GiB")
    with pytest.raises(UsageError, match="less than the model's 25.71 GB of weights"):
        resolved(spec, WITH_GPU)


def test_max_memory_without_a_device_map_and_a_map_with_a_device_are_refused() -> None:
    with pytest.raises(UsageError, match="pass --device-map auto too"):
        resolved(RunSpec(model="opt-125m", max_memory="cpu=1GiB"))
    with pytest.raises(UsageError, match="starting on cuda:0; name its devices"):
        resolved(RunSpec(model="opt-125m", device_map="auto", device="cuda:1"), WITH_GPU)
    with pytest.raises(UsageError, match="unknown device map"):
        resolved(RunSpec(model="opt-125m", device_map="everywhere"))


def test_a_cpu_only_map_runs_on_the_cpu() -> None:
    run = resolved(RunSpec(model="opt-125m", device_map="sequential", max_memory="cpu=4GiB"))
    assert (run.device, run.backend, run.max_memory) == ("cpu", "cpu", {"cpu": 4 * GiB})


def _accelerate_map(name: str, max_memory: dict, strategy: str) -> dict[str, str]:
    """accelerate's public functions, called directly on the meta model."""
    import torch
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    from vramtui.models.hf import meta_model, transformers_config
    from vramtui.models.layer_placement import device_name

    model = meta_model(transformers_config(lookup(name).config), torch.float16)
    no_split = model._no_split_modules
    budget = dict(max_memory)
    if strategy != "sequential":
        budget = get_balanced_memory(model, max_memory=dict(max_memory),
                                     no_split_module_classes=no_split)  # fmt: skip
    placed = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)
    return {k: device_name(v) for k, v in placed.items()}


@pytest.mark.parametrize(
    ("name", "max_memory", "strategy"),
    [
        ("llama-3.1-70b", {0: 80 * GiB, 1: 80 * GiB}, "auto"),
        ("opt-66b", {0: 80 * GiB, 1: 80 * GiB}, "balanced"),
        ("opt-13b", {0: 12 * GiB, "cpu": 64 * GiB}, "sequential"),
        ("mixtral-8x7b", {0: 40 * GiB, 1: 40 * GiB, 2: 40 * GiB}, "auto"),
    ],
)
@pytest.mark.engine
def test_the_placement_is_accelerates(name: str, max_memory: dict, strategy: str) -> None:
    entry = lookup(name)
    placed = place_model(entry.config, "float16", strategy, max_memory)
    assert placed is not None
    assert placed.device_map == _accelerate_map(name, max_memory, strategy)
    held = [i for d in placed.devices for i in d.layers]
    assert sorted(held) == list(range(entry.config["num_hidden_layers"]))
    one_device = _arch(resolved(RunSpec(model=name), WITH_GPU)).weights_bytes("float16")
    assert sum(d.weights_bytes for d in placed.devices) == one_device
    assert [d.holds_head for d in placed.devices].count(True) == 1


@pytest.mark.engine
def test_opt_66b_balanced_splits_as_measured() -> None:
    """docs/placement.md: embeddings, positions, final norm and the tied head on GPU 0 with 32
    layers; 32 layers on GPU 1."""
    placed = place_model(lookup("opt-66b").config, "float16", "balanced",
                         {0: 80 * GiB, 1: 80 * GiB})  # fmt: skip
    assert placed is not None
    first, second = placed.devices
    assert first.layers == tuple(range(32)) and second.layers == tuple(range(32, 64))
    assert first.holds_head and "model.decoder.embed_tokens" in first.modules


def _placed(name: str, max_memory: dict, tokens: int, strategy: str = "auto"):  # noqa: ANN202
    run = resolved(RunSpec(model=name, tokens=tokens, device_map=strategy), WITH_GPU)
    est = estimate(run.model or _arch(run), tokens=tokens, prompt_tokens=8)
    return est, estimate_placed(est, dict(run.config or {}), strategy, max_memory)


def _arch(run):  # noqa: ANN001, ANN202
    from vramtui.predict.estimator import architecture_of

    return architecture_of(run)


@pytest.mark.engine
def test_every_device_predicted_sums_to_the_one_device_estimate() -> None:
    est, placed = _placed("opt-66b", {0: 80 * GiB, 1: 80 * GiB}, 2000, "balanced")
    gpu0, gpu1 = placed.devices
    assert gpu0.weights_bytes + gpu1.weights_bytes == est.weights_bytes
    assert gpu0.kv_cache_bytes + gpu1.kv_cache_bytes == est.kv_cache_bytes
    assert gpu0.kv_cache_bytes == gpu1.kv_cache_bytes  # 32 layers each
    # the head is on GPU 0: logits and sampling there, none on GPU 1
    assert gpu0.transient_bytes == est.transient_bytes and gpu1.transient_bytes == 0
    assert gpu1.peak_allocated_bytes == gpu1.weights_bytes + gpu1.kv_cache_bytes
    assert placed.runs_out_first is None and placed.room == placed.max_memory


@pytest.mark.engine
def test_offloaded_layers_keep_their_cache_on_the_first_gpu() -> None:
    est, placed = _placed("opt-13b", {0: 12 * GiB, "cpu": 64 * GiB}, 50)
    gpu, cpu = placed.devices
    assert cpu.device == "cpu" and cpu.layers and cpu.kv_cache_bytes == 0
    assert gpu.kv_cache_bytes == est.kv_cache_bytes  # every layer's cache is on the GPU
    layer_bytes = (est.weights_bytes - gpu.weights_bytes) // len(cpu.layers)  # one layer
    assert gpu.transient_bytes >= layer_bytes  # an offloaded layer is copied in to run
    # accelerate filled GPU 0 with weights: generation does not fit its 12 GiB
    assert placed.runs_out_first is gpu and gpu.peak_total_bytes > 12 * GiB


@pytest.mark.engine
def test_the_suggested_max_memory_leaves_room_for_generation() -> None:
    _, placed = _placed("opt-13b", {0: 12 * GiB, "cpu": 64 * GiB}, 50)
    assert placed.room is not None and placed.room[0] < 12 * GiB
    assert placed.room["cpu"] == 64 * GiB
    # placed again with the suggestion, every device fits the memory it really has
    est, again = _placed("opt-13b", placed.room, 50)
    physical = {0: 12 * GiB, "cpu": 64 * GiB}
    from vramtui.predict.placed import device_estimates

    for device in device_estimates(est, again.placement, physical):
        assert device.fits, device


@pytest.mark.engine
def test_a_tiny_config_places_on_the_cpu_and_gpus() -> None:
    import json

    config = json.loads(TINY_CONFIG.read_text())
    placed = place_model(config, "float32", "sequential", {0: 100_000, "cpu": 10**9})
    assert placed is not None
    assert [d.device for d in placed.devices] == ["cuda:0", "cpu"]
    assert tiny_spec().device == "cpu" and CPU_ONLY.best() == "cpu"


def test_a_map_takes_the_device_it_starts_on() -> None:
    """The app's form always names a device: the one the map starts on is accepted."""
    gpu = RunSpec(model="opt-125m", device="cuda:0", device_map="auto", max_memory="0=8GiB")
    assert resolved(gpu, WITH_GPU).device == "cuda:0"
    cpu = RunSpec(model="opt-125m", device="cpu", device_map="auto", max_memory="cpu=8GiB")
    assert resolved(cpu).device == "cpu"
    with pytest.raises(UsageError, match="starting on cpu"):
        resolved(replace(cpu, device="cuda:0"), WITH_GPU)


def test_weights_offloaded_to_the_cpu_are_random_where_the_map_puts_them() -> None:
    """The random-weight build: each tensor made on its mapped device; those on the CPU
    of a placed model are filled at once (accelerate keeps them out of the model's
    parameters, where the in-place randomisation after the load cannot reach)."""
    import json

    import torch

    from vramtui.measure.engine.random_weights import checkpoint_tensors
    from vramtui.models.hf import meta_model, transformers_config

    meta = meta_model(transformers_config(json.loads(TINY_CONFIG.read_text())), torch.float32)
    tensors = checkpoint_tensors(meta, {"": "meta", "model.decoder.layers.1": "cpu"}, 0.02)
    offloaded = {k: t for k, t in tensors.items() if k.startswith("model.decoder.layers.1.")}
    assert offloaded and all(t.device == "cpu" and t.std == 0.02 for t in offloaded.values())
    assert all(t.device == "meta" and t.std is None
               for k, t in tensors.items() if k not in offloaded)  # fmt: skip
    weight = offloaded["model.decoder.layers.1.fc1.weight"][...]
    assert weight.device.type == "cpu" and 0.015 < float(weight.std()) < 0.025


@pytest.mark.engine
def test_estimate_json_lists_every_device_and_the_room_for_generation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from vramtui.cli import main

    args = ["estimate", "--model", "opt-13b", "--device-map", "auto", "--max-memory",
            "0=12GiB,cpu=64GiB", "--tokens", "50"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["device"] for d in data["devices"]] == ["cuda:0", "cpu"]
    assert sum(d["weights_bytes"] for d in data["devices"]) == data["weights_bytes"]
    assert data["runs_out_first"] == "cuda:0" and data["devices"][0]["fits"] is False
    assert data["max_memory_for_generation"].startswith("0=") and "cpu=64GiB" in data[
        "max_memory_for_generation"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "runs out first: cuda:0" in text and "--max-memory that leaves room" in text
    # a CPU-only map: the default --device (cuda) does not stand in its way
    assert main(["estimate", "--model", "opt-125m", "--device-map", "auto", "--max-memory",
                 "cpu=4GiB", "--json"]) == 0  # fmt: skip
    assert [d["device"] for d in json.loads(capsys.readouterr().out)["devices"]] == ["cpu"]


def test_the_engine_refuses_a_gpu_it_cannot_see() -> None:
    """Where NVML could not count the GPUs, the engine checks (a usage failure, exit 2)."""
    import torch

    from vramtui.measure.engine.probes import candidate_devices

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert candidate_devices({"cpu": GiB}) == ["cpu"]
    with pytest.raises(UsageError, match=f"names GPU {count}, which is not here"):
        candidate_devices({count: GiB, "cpu": GiB})
