"""GPU energy and power through NVML (``nvidia-ml-py``, imported as ``pynvml``).

The total-energy counter (mJ, Volta and newer) is the source of truth. Instant power
(``NVML_FI_DEV_POWER_INSTANT``) draws the timeline; ``nvmlDeviceGetPowerUsage`` is a last resort,
since on recent GPUs it is a 1 s average. The module is imported by name so tests can hand in a
small fake of the functions used here.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from evaluator.power.base import ENERGY, POWER, Channel, MeterUnavailable

DEFAULT_MODULE = "pynvml"


def nvml_module_name() -> str:
    """``EDL_NVML_MODULE`` names another module with pynvml's functions (tests use a fake); else pynvml."""
    return os.environ.get("EDL_NVML_MODULE", DEFAULT_MODULE)


def nvml_index(cuda_device: int) -> int:
    """The NVML index of CUDA device ``cuda_device``: CUDA_VISIBLE_DEVICES renumbers devices, NVML does not."""
    visible = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    if visible and all(part.isdigit() for part in visible) and cuda_device < len(visible):
        return int(visible[cuda_device])
    return cuda_device


def load_nvml(module: str = "") -> ModuleType:
    """Import and initialise NVML (``module``, else ``nvml_module_name()``), or raise MeterUnavailable saying why."""
    module = module or nvml_module_name()
    try:
        nvml = importlib.import_module(module)
    except ImportError as exc:
        raise MeterUnavailable(f"{module} is not installed ({exc}); pip install nvidia-ml-py") from None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError subclasses differ by driver state
        raise MeterUnavailable(
            f"NVML cannot initialise ({exc}): no NVIDIA GPU or driver here, or the container lacks the driver's "
            "libnvidia-ml.so"
        ) from None
    return nvml


def _try(call: Callable[..., Any], *args: object) -> Any:
    """Call NVML; None when the GPU does not support it (NotSupported, NoPermission, GpuIsLost...)."""
    try:
        return call(*args)
    except Exception:  # noqa: BLE001 - NotSupported, NoPermission, GpuIsLost...
        return None


@dataclass
class GpuMeter:
    """One GPU's handle and how its energy and power are read."""

    index: int
    handle: object
    energy_counter: bool
    power_method: str  # instant | average
    notes: list[str] = field(default_factory=list)


class NvmlSource:
    """Energy counter and instant power of the GPUs being scored on."""

    name = "nvml"

    def __init__(self, gpu_indices: tuple[int, ...], module: str = "") -> None:
        self.nvml = load_nvml(module)
        count = self.nvml.nvmlDeviceGetCount()
        self.gpus: list[GpuMeter] = []
        for index in gpu_indices:
            if not 0 <= index < count:
                raise MeterUnavailable(f"GPU {index} does not exist (NVML sees {count}); check --gpu")
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            self.gpus.append(self._probe(index, handle))

    def _probe(self, index: int, handle: object) -> GpuMeter:
        notes = []
        energy_counter = _try(self.nvml.nvmlDeviceGetTotalEnergyConsumption, handle) is not None
        if not energy_counter:
            notes.append("no total-energy counter (pre-Volta GPU?): energy integrates power instead")
        if self._instant_power_mw(handle) is not None:
            power_method = "instant"
        elif _try(self.nvml.nvmlDeviceGetPowerUsage, handle) is not None:
            power_method = "average"
            notes.append("NVML_FI_DEV_POWER_INSTANT unsupported: the timeline uses nvmlDeviceGetPowerUsage (averaged)")
        else:
            power_method = "none"
            notes.append("no power reading at all")
        if not energy_counter and power_method == "none":
            raise MeterUnavailable(f"GPU {index} offers neither an energy counter nor a power reading")
        return GpuMeter(index, handle, energy_counter, power_method, notes)

    def _instant_power_mw(self, handle: object) -> float | None:
        values = _try(self.nvml.nvmlDeviceGetFieldValues, handle, [self.nvml.NVML_FI_DEV_POWER_INSTANT])
        if not values:
            return None
        value = values[0]
        if value.nvmlReturn != self.nvml.NVML_SUCCESS:  # each field carries its own return code
            return None
        return float(value.value.uiVal)

    def channels(self) -> list[Channel]:
        channels = []
        for gpu in self.gpus:
            note = "; ".join(gpu.notes)
            if gpu.energy_counter:
                channels.append(Channel(f"gpu{gpu.index}_energy_j", "gpu", ENERGY, note))
            if gpu.power_method != "none":
                channels.append(Channel(f"gpu{gpu.index}_power_w", "gpu", POWER, note))
        return channels

    def read(self) -> list[float]:
        values: list[float] = []
        for gpu in self.gpus:
            if gpu.energy_counter:
                energy_mj = _try(self.nvml.nvmlDeviceGetTotalEnergyConsumption, gpu.handle)
                values.append(math.nan if energy_mj is None else energy_mj / 1e3)
            if gpu.power_method == "instant":
                power_mw = self._instant_power_mw(gpu.handle)
                values.append(math.nan if power_mw is None else power_mw / 1e3)
            elif gpu.power_method == "average":
                power_mw = _try(self.nvml.nvmlDeviceGetPowerUsage, gpu.handle)
                values.append(math.nan if power_mw is None else power_mw / 1e3)
        return values

    def close(self) -> None:
        _try(self.nvml.nvmlShutdown)


@dataclass(frozen=True)
class NvmlSpec:
    """Picklable recipe: which GPUs, and which module provides the NVML functions."""

    gpu_indices: tuple[int, ...] = (0,)
    module: str = ""  # "": EDL_NVML_MODULE, else pynvml, resolved where the source opens
    name: str = "nvml"

    def open(self) -> NvmlSource:
        return NvmlSource(self.gpu_indices, self.module)


@dataclass(frozen=True)
class GpuSnapshot:
    """One GPU's state at one moment: what a fair comparison needs to know was the same."""

    index: int
    name: str | None
    temperature_c: float | None
    sm_clock_mhz: float | None
    memory_clock_mhz: float | None
    power_limit_w: float | None
    clock_event_reasons: int | None
    other_compute_pids: list[int]
    memory_used_mib: int | None  # all processes on the GPU


def gpu_state(nvml: ModuleType, index: int) -> GpuSnapshot:
    """The fairness record of one GPU: clocks, temperature, power limit, throttling, other processes."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _try(nvml.nvmlDeviceGetName, handle)
    reasons_call = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    limit_mw = _try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    processes = _try(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    memory = _try(nvml.nvmlDeviceGetMemoryInfo, handle)
    return GpuSnapshot(
        index=index,
        name=name.decode() if isinstance(name, bytes) else name,
        temperature_c=_try(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        sm_clock_mhz=_try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        memory_clock_mhz=_try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        power_limit_w=None if limit_mw is None else limit_mw / 1e3,
        clock_event_reasons=_try(reasons_call, handle) if reasons_call else None,
        other_compute_pids=sorted({int(p.pid) for p in processes if int(p.pid) != os.getpid()}),
        memory_used_mib=None if memory is None else round(memory.used / 2**20),
    )


def driver_version(nvml: ModuleType) -> str | None:
    version = _try(nvml.nvmlSystemGetDriverVersion)
    return version.decode() if isinstance(version, bytes) else version
