"""NVML, done carefully: lazy locked init, every failure an 'unavailable' answer.

The app process uses NVML only (never CUDA), so it creates no CUDA context
and per-process figures belong to the engine.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"init": None, "error": None, "module": None, "no_driver": False}
# NVML's own words for "there is no NVIDIA driver here": then there is no CUDA GPU either.
_NO_DRIVER = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    total: int
    used: int
    free: int


def _nvml() -> Any | None:
    """The initialised pynvml module, or None (and a reason in `unavailable_reason`)."""
    with _lock:
        if _state["init"] is not None:
            return _state["module"] if _state["init"] else None
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            no_driver = type(exc).__name__ in _NO_DRIVER
            _state.update(init=False, error=_describe(exc), no_driver=no_driver)
            return None
        _state.update(init=True, module=pynvml)
        atexit.register(_shutdown)
        return pynvml


def _shutdown() -> None:
    module = _state.get("module")
    if module is not None:
        try:
            module.nvmlShutdown()
        except Exception:
            pass


def _describe(exc: Exception) -> str:
    if isinstance(exc, ImportError):
        return "nvidia-ml-py is not installed"
    text = str(exc) or type(exc).__name__
    return f"NVML unavailable: {text}"


def available() -> bool:
    return _nvml() is not None


def no_driver() -> bool:
    """NVML said there is no NVIDIA driver (not merely that it could not answer)."""
    _nvml()
    return bool(_state["no_driver"])


def unavailable_reason() -> str | None:
    _nvml()
    error: str | None = _state["error"]
    return error


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def driver_version() -> str | None:
    nv = _nvml()
    if nv is None:
        return None
    try:
        return _text(nv.nvmlSystemGetDriverVersion())
    except Exception:
        return None


def gpus() -> list[GpuInfo]:
    """Every GPU NVML sees, in NVML's (PCI) order; [] without NVML."""
    nv = _nvml()
    if nv is None:
        return []
    out = []
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception:
        return []
    for i in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuInfo(
                    index=i,
                    name=_text(nv.nvmlDeviceGetName(handle)),
                    uuid=_text(nv.nvmlDeviceGetUUID(handle)),
                    total=int(mem.total),
                    used=int(mem.used),
                    free=int(mem.free),
                )
            )
        except Exception:
            continue
    return out


def normalise_uuid(uuid: str | None) -> str | None:
    if not uuid:
        return None
    text = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        text = text.removeprefix(prefix)
    return text


def find_by_uuid(uuid: str | None) -> GpuInfo | None:
    want = normalise_uuid(uuid)
    if want is None:
        return None
    for gpu in gpus():
        if normalise_uuid(gpu.uuid) == want:
            return gpu
    return None


@dataclass(frozen=True)
class Reading:
    t: float
    process_bytes: int | None  # the engine's own, or device used - baseline (see mode)
    device_used: int | None
    device_total: int | None


class DeviceWatch:
    """Reads one GPU's memory and one PID's share of it.

    Where NVML cannot see the PID (containers), the process figure becomes
    device used minus the used memory before the run, once the engine clearly
    holds memory; `mode` says which, and never silently.
    """

    CONTEXT_THRESHOLD = 64 * 1024 * 1024

    def __init__(self, gpu: GpuInfo, pid: int, baseline_used: int | None) -> None:
        nv = _nvml()
        assert nv is not None
        self._nv = nv
        self._handle = nv.nvmlDeviceGetHandleByIndex(gpu.index)
        self.gpu = gpu
        self.pid = pid
        self.baseline_used = baseline_used
        self.mode = "pid"  # pid | pending | baseline | none
        self._pid_seen = False
        self._process_supported = True
        self.errors: list[str] = []

    def _process_used(self) -> tuple[bool, int | None]:
        if not self._process_supported:
            return False, None
        try:
            procs = self._nv.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception as exc:
            self._process_supported = False
            self.errors.append(f"per-process memory not supported by NVML here ({_describe(exc)})")
            return False, None
        for proc in procs:
            if proc.pid == self.pid:
                used = proc.usedGpuMemory
                return True, int(used) if used is not None else None
        return False, None

    def read(self) -> Reading:
        t = time.monotonic()
        try:
            mem = self._nv.nvmlDeviceGetMemoryInfo(self._handle)
            used: int | None = int(mem.used)
            total: int | None = int(mem.total)
        except Exception as exc:
            if not self.errors:
                self.errors.append(f"device memory unreadable: {_describe(exc)}")
            used = total = None
        seen, process = self._process_used()
        if seen:
            self._pid_seen = True
            self.mode = "pid"
            return Reading(t, process, used, total)
        if self._pid_seen:  # the engine has released the GPU (it is ending)
            return Reading(t, None, used, total)
        grown = (
            used - self.baseline_used
            if used is not None and self.baseline_used is not None
            else None
        )
        if grown is not None and (self.mode == "baseline" or grown > self.CONTEXT_THRESHOLD):
            self.mode = "baseline"
            return Reading(t, max(grown, 0), used, total)
        return Reading(t, None, used, total)


class WatchGroup:
    """Several GPUs read in one poll: the run's own (named None) and the other GPUs a
    placed model uses (named cuda:N, as the engine names them)."""

    def __init__(self) -> None:
        self.watches: tuple[tuple[str | None, DeviceWatch], ...] = ()

    def add(self, device: str | None, watch: DeviceWatch) -> None:
        # a new tuple, swapped whole: the poller's thread may be reading the old one
        self.watches = (*self.watches, (device, watch))

    def read(self) -> list[tuple[str | None, Reading]]:
        return [(device, watch.read()) for device, watch in self.watches]


class Poller:
    """A thread that calls `on_reading(watch.read())` at `hz` until stopped (`watch`:
    a DeviceWatch, or a WatchGroup of several)."""

    def __init__(self, watch: Any, on_reading: Callable[[Any], None], hz: float = 200.0) -> None:
        self.watch = watch
        self.on_reading = on_reading
        self.interval = 1.0 / hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvml-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.on_reading(self.watch.read())
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
