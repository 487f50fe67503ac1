"""One spec, resolved once: everything a run needs to know before it starts.

`resolve()` checks every field that can be checked without torch, reads the
config a run builds from, finds the device it will run on, and returns a
`ResolvedRun` that the estimate, the recorder and the screens all read. Each
problem is a UsageError naming its field, raised before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vramtui.errors import UsageError
from vramtui.models.architecture import DTYPE_BYTES, ModelInfo
from vramtui.models.catalogue import lookup, variant_note
from vramtui.models.opt import model_info_for_config
from vramtui.runspec.cap import check_cap
from vramtui.runspec.device_choice import DeviceChoice, DeviceList, backend_of, check_device
from vramtui.runspec.device_map import (
    MaxMemory,
    check_capacity,
    check_device_map,
    check_devices_exist,
    first_device,
    parse_max_memory,
)
from vramtui.runspec.quant import (
    CACHE_BITS,
    check_cache_backend,
    check_quant,
    check_quant_device,
)
from vramtui.runspec.run_spec import (
    ALLOC_CONF,
    ATTENTION,
    CACHES,
    DTYPES,
    SOURCES,
    RunSpec,
    expandable_segments,
    resolve_dtype,
)
from vramtui.runspec.sources import (
    has_tokenizer,
    max_positions,
    read_checkpoint,
    read_config_source,
)


@dataclass(frozen=True)
class ResolvedRun:
    """A checked spec and the facts that follow from it."""

    spec: RunSpec  # normalised: canonical model name and device id
    device: str  # the device it will run on (`auto` made concrete, as far as NVML knows)
    backend: str  # cuda | mps | cpu
    dtype: str  # float16 on GPUs, float32 on the CPU, unless asked
    model: ModelInfo | None  # the OPT record, where the estimator models it by hand
    model_note: str | None  # why the model is not known before the engine runs
    config: dict[str, object] | None  # the config (catalogue entry's or config.json read)
    positions: int | None  # the longest sequence the model allows, where known
    alloc_conf: str | None  # PYTORCH_CUDA_ALLOC_CONF the engine will run with
    device_choice: DeviceChoice | None = None  # name, total and free memory of the device
    max_memory: MaxMemory | None = None  # --max-memory parsed: GPU index or "cpu" -> bytes
    # A fine-tuned variant read as its base model: "Qwen/Qwen2.5-7B-Instruct: same
    # architecture as qwen2.5-7b" (None for a catalogue name, a config or a checkpoint)
    variant_note: str | None = None

    @property
    def expandable_segments(self) -> bool:
        return expandable_segments(self.alloc_conf)


def check_fields(spec: RunSpec) -> None:
    """The fields that need nothing but themselves."""
    if spec.source not in SOURCES:
        choose = ", ".join(SOURCES)
        raise UsageError(f"unknown source {spec.source!r}; choose from {choose}", field="source")
    if spec.tokens <= 0:
        raise UsageError(
            f"--tokens must be a positive number of new tokens, got {spec.tokens}", field="tokens"
        )
    if spec.prompt_tokens <= 0 and not spec.prompt:
        raise UsageError(
            f"--prompt-tokens must be positive, got {spec.prompt_tokens}", field="prompt_tokens"
        )
    if spec.batch <= 0:
        raise UsageError(f"--batch must be positive, got {spec.batch}", field="batch")
    if spec.dtype is not None and spec.dtype not in DTYPES:
        choose = ", ".join(DTYPES)
        raise UsageError(f"unknown dtype {spec.dtype!r}; choose from {choose}", field="dtype")
    if spec.cache not in CACHES:
        choose = ", ".join(CACHES)
        raise UsageError(f"unknown cache {spec.cache!r}; choose from {choose}", field="cache")
    if spec.attn not in ATTENTION:
        choose = ", ".join(ATTENTION)
        raise UsageError(f"unknown attention {spec.attn!r}; choose from {choose}", field="attn")
    check_quant(spec.quant, spec.double_quant)
    check_cache_backend(spec.cache)
    if spec.cache_bits not in CACHE_BITS:
        choose = ", ".join(str(b) for b in CACHE_BITS)
        raise UsageError(f"--cache-bits must be one of {choose}, got {spec.cache_bits}")


def read_model(
    spec: RunSpec,
) -> tuple[RunSpec, ModelInfo | None, str | None, dict[str, Any] | None]:
    """(spec with its canonical model name, architecture, why none, config read)."""
    if spec.source == "architecture":
        entry = lookup(spec.model)
        return replace(spec, model=entry.name), entry.opt, None, entry.config
    if spec.source == "config":
        config: dict[str, object] | None = read_config_source(spec.path)
    else:
        config = read_checkpoint(
            spec.path, allow_pickle=spec.allow_pickle, allow_download=spec.allow_download
        )
    if config is None:
        return spec, None, "the checkpoint is fetched by the engine", None
    # OPT configs the hand-written record reads exactly; any other is traced
    info = model_info_for_config(config)
    return spec, (replace(info, name=spec.model) if info else None), None, config


def check_positions(spec: RunSpec, positions: int | None) -> None:
    if spec.prompt or positions is None:
        return  # a text prompt's length is known once it is tokenized (the engine checks)
    if spec.prompt_tokens + spec.tokens > positions:
        raise UsageError(
            f"prompt ({spec.prompt_tokens}) + new tokens ({spec.tokens}) = "
            f"{spec.prompt_tokens + spec.tokens} exceeds the model's limit of {positions} "
            "positions",
            field="tokens",
        )


def check_prompt(spec: RunSpec) -> None:
    if not spec.prompt:
        return
    if spec.source != "checkpoint":
        raise UsageError(
            "--prompt needs a checkpoint with a tokenizer (random weights have none); "
            "use --prompt-tokens instead",
            field="prompt",
        )
    if has_tokenizer(str(spec.path)) is False:
        raise UsageError(
            f"--prompt needs a tokenizer, and {spec.path} has none; use --prompt-tokens instead",
            field="prompt",
        )


def resolve(
    spec: RunSpec, devices: DeviceList, environ: Mapping[str, str] | None = None
) -> ResolvedRun:
    """Check `spec` against itself, its model source and the devices there are."""
    environ = os.environ if environ is None else environ
    check_fields(spec)
    variant = variant_note(spec.model) if spec.source == "architecture" else None
    spec, info, note, config = read_model(spec)
    positions = info.positions if info else (max_positions(config) if config else None)
    check_positions(spec, positions)
    check_prompt(spec)
    spec, max_memory = check_placement(spec, devices)
    spec = replace(spec, device=check_device(spec.device, devices))
    device = devices.best() if spec.device == "auto" else spec.device
    if spec.device_map is not None:
        device = first_device(max_memory, devices)
    backend = backend_of(device)
    choice = devices.find(device)
    total = choice.total if choice is not None else None
    check_cap(spec.cap_bytes, backend, total, device=device, device_map=spec.device_map)
    check_quant_device(spec.quant, backend)
    if max_memory is not None and config is not None and spec.source == "architecture":
        check_capacity(
            max_memory, lookup(spec.model).params * DTYPE_BYTES[resolve_dtype(spec.dtype, backend)]
        )
    return ResolvedRun(
        spec=spec,
        device=device,
        backend=backend,
        dtype=resolve_dtype(spec.dtype, backend),
        model=info,
        model_note=note,
        config=config,
        positions=positions,
        alloc_conf=environ.get(ALLOC_CONF) or None,
        device_choice=choice,
        max_memory=max_memory,
        variant_note=variant,
    )


def check_placement(spec: RunSpec, devices: DeviceList) -> tuple[RunSpec, MaxMemory | None]:
    """--device-map and --max-memory: known names, sizes with units, GPUs that are there."""
    device_map = check_device_map(spec.device_map)
    if spec.max_memory is not None and device_map is None:
        raise UsageError(
            "--max-memory places the model with a device map; pass --device-map auto too",
            field="max_memory",
        )
    if device_map is None:
        return spec, None
    max_memory = parse_max_memory(spec.max_memory) if spec.max_memory is not None else None
    if max_memory is not None:
        check_devices_exist(max_memory, devices)
    first = first_device(max_memory, devices)  # where its inputs go: the run's device
    allowed = {"auto", first} | ({"cuda"} if first == "cuda:0" else set())
    if spec.device.strip().lower() not in allowed:
        raise UsageError(
            f"--device-map places the model itself, starting on {first}; name its devices "
            f"with --max-memory, not --device {spec.device}",
            field="device",
        )
    return replace(spec, device_map=device_map, device="auto"), max_memory
