"""Placing a model across devices: `--device-map` and `--max-memory`, as accelerate spells them.

Pure: the flags are parsed and checked here; the placement itself is computed by
transformers' own functions (in the engine, and in the estimator's child process).
`--max-memory 0=70GiB,1=80GiB,cpu=200GiB` names GPUs by CUDA's number and the CPU;
sizes need a unit (GB = 10^9, GiB = 2^30, as accelerate reads them).
"""

from __future__ import annotations

from vramtui.errors import UsageError
from vramtui.runspec.device_choice import DeviceList
from vramtui.units import format_bytes, parse_size

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")

MaxMemory = dict[int | str, int]  # GPU index or "cpu" -> bytes, as accelerate takes it


def check_device_map(name: str | None) -> str | None:
    if name is None:
        return None
    wanted = name.strip().lower()
    if wanted not in DEVICE_MAPS:
        choose = ", ".join(DEVICE_MAPS)
        raise UsageError(f"unknown device map {name!r}; choose from {choose}", field="device_map")
    return wanted


def _key(text: str) -> int | str:
    key = text.strip().lower().removeprefix("cuda:")
    if key.isdigit():
        return int(key)
    if key == "cpu":
        return "cpu"
    raise UsageError(
        f"--max-memory names {text.strip()!r}: name GPUs by number (0, 1, ...) and the CPU "
        "as cpu, e.g. 0=70GiB,cpu=200GiB",
        field="max_memory",
    )


def parse_max_memory(text: str) -> MaxMemory:
    """'0=70GiB,1=80GB,cpu=200GiB' -> {0: 75161927680, 1: 80000000000, 'cpu': ...}."""
    out: MaxMemory = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UsageError(
                f"--max-memory wants DEVICE=SIZE pairs, e.g. 0=70GiB,cpu=200GiB; got {part!r}",
                field="max_memory",
            )
        name, size = part.split("=", 1)
        key = _key(name)
        if key in out:
            raise UsageError(f"--max-memory names {name.strip()!r} twice", field="max_memory")
        out[key] = parse_size(size, field="max_memory", need_unit=True)
    if not out:
        raise UsageError("--max-memory is empty", field="max_memory")
    gpus = sorted(k for k in out if isinstance(k, int))
    return {**{k: out[k] for k in gpus}, **({"cpu": out["cpu"]} if "cpu" in out else {})}


def format_max_memory(max_memory: MaxMemory) -> str:
    """The canonical text of a map: exact bytes, so it parses back to itself."""
    return ",".join(f"{k}={v}B" for k, v in max_memory.items())


def device_id(key: int | str) -> str:
    """cuda:N or cpu, for a max_memory or device_map key."""
    return f"cuda:{key}" if isinstance(key, int) else str(key)


def first_device(max_memory: MaxMemory | None, devices: DeviceList) -> str:
    """Where a placed run's inputs go: its first GPU, else the CPU."""
    if max_memory is not None:
        return device_id(next(iter(max_memory)))
    best = devices.best()
    return best if best.startswith("cuda") else "cpu"


def devices_max_memory(given: MaxMemory | None, devices: DeviceList) -> MaxMemory:
    """--max-memory, or else every GPU listed at its total and the CPU's available RAM."""
    if given is not None:
        return given
    out: MaxMemory = {}
    for choice in devices.choices:
        if choice.id.startswith("cuda:") and choice.total:
            out[int(choice.id.split(":")[1])] = choice.total
        elif choice.id == "cpu" and choice.free:
            out["cpu"] = choice.free
    if not any(isinstance(k, int) for k in out):
        raise UsageError(
            "no GPU here to place the model on; name the devices with --max-memory, "
            "e.g. 0=80GiB,1=80GiB",
            field="max_memory",
        )
    return out


def check_devices_exist(max_memory: MaxMemory, devices: DeviceList) -> None:
    """Every GPU named is there (where NVML could count them)."""
    if not devices.gpus_counted:
        return
    listed = ", ".join(devices.ids())
    for key in max_memory:
        if isinstance(key, int) and devices.find(f"cuda:{key}") is None:
            raise UsageError(
                f"--max-memory names GPU {key}, which is not here; devices here: {listed}",
                field="max_memory",
            )


def check_capacity(max_memory: MaxMemory, weights_bytes: int) -> None:
    """A map whose devices together hold less than the weights cannot place the model
    (transformers would spill the rest to disk, which a run does not do)."""
    total = sum(max_memory.values())
    if total < weights_bytes:
        raise UsageError(
            f"--max-memory holds {format_bytes(total, 2)} in all, less than the model's "
            f"{format_bytes(weights_bytes, 2)} of weights",
            field="max_memory",
        )
