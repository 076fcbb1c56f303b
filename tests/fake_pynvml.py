"""A small fake of the pynvml functions edl uses, driven by environment variables.

Environment variables cross into the ``spawn`` sampler process, so the real sampler can be run
against it. The energy counter is a pure function of ``time.monotonic()``: ``watts`` since the
module's epoch, optionally in NVML-like steps.

FAKE_NVML_MODE: comma-separated flags: ``absent`` (nvmlInit fails), ``no_counter``,
``no_instant`` (the field returns NotSupported), ``no_power``.
FAKE_NVML_WATTS, FAKE_NVML_STEP_S, FAKE_NVML_EPOCH (a monotonic time), FAKE_NVML_TEMPS (a list
of temperatures returned one after another, the last repeated), FAKE_NVML_NAME (the GPU's model name).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_FI_DEV_POWER_INSTANT = 186
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
_temperature_calls = 0


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801, N818 - pynvml's own name
    pass


def _mode() -> set[str]:
    return set(filter(None, os.environ.get("FAKE_NVML_MODE", "").split(",")))


def _watts() -> float:
    return float(os.environ.get("FAKE_NVML_WATTS", "100"))


def nvmlInit() -> None:  # noqa: N802 - pynvml's own name
    if "absent" in _mode():
        raise NVMLError("NVML Shared Library Not Found")


def nvmlShutdown() -> None:  # noqa: N802
    pass


def nvmlDeviceGetCount() -> int:  # noqa: N802
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> object:  # noqa: N802
    return SimpleNamespace(index=index)


def nvmlDeviceGetTotalEnergyConsumption(handle: object) -> int:  # noqa: N802
    if "no_counter" in _mode():
        raise NVMLError_NotSupported("Not Supported")
    elapsed = time.monotonic() - float(os.environ.get("FAKE_NVML_EPOCH", "0"))
    step = float(os.environ.get("FAKE_NVML_STEP_S", "0"))
    if step > 0:
        elapsed = (elapsed // step) * step
    return int(5_000_000 + _watts() * elapsed * 1000)  # millijoules, from an arbitrary start


def nvmlDeviceGetFieldValues(handle: object, field_ids: list[int]) -> list[SimpleNamespace]:  # noqa: N802
    values = []
    for field_id in field_ids:
        supported = field_id == NVML_FI_DEV_POWER_INSTANT and "no_instant" not in _mode()
        values.append(SimpleNamespace(
            fieldId=field_id,
            nvmlReturn=NVML_SUCCESS if supported else NVML_ERROR_NOT_SUPPORTED,
            value=SimpleNamespace(uiVal=int(_watts() * 1000) if supported else 0),
        ))
    return values


def nvmlDeviceGetPowerUsage(handle: object) -> int:  # noqa: N802
    if "no_power" in _mode():
        raise NVMLError_NotSupported("Not Supported")
    return int(_watts() * 1000)


def nvmlDeviceGetName(handle: object) -> str:  # noqa: N802
    return os.environ.get("FAKE_NVML_NAME", "Fake GPU")


def nvmlDeviceGetTemperature(handle: object, sensor: int) -> int:  # noqa: N802
    global _temperature_calls
    temps = [int(t) for t in os.environ.get("FAKE_NVML_TEMPS", "40").split(",")]
    value = temps[min(_temperature_calls, len(temps) - 1)]
    _temperature_calls += 1
    return value


def nvmlDeviceGetClockInfo(handle: object, clock: int) -> int:  # noqa: N802
    return 1980 if clock == NVML_CLOCK_SM else 2619


def nvmlDeviceGetEnforcedPowerLimit(handle: object) -> int:  # noqa: N802
    return 700_000


def nvmlDeviceGetCurrentClocksEventReasons(handle: object) -> int:  # noqa: N802
    return 0


def nvmlDeviceGetComputeRunningProcesses(handle: object) -> list[SimpleNamespace]:  # noqa: N802
    pids = [int(p) for p in os.environ.get("FAKE_NVML_PIDS", "").split(",") if p]
    return [SimpleNamespace(pid=pid, usedGpuMemory=0) for pid in pids]


def nvmlDeviceGetMemoryInfo(handle: object) -> SimpleNamespace:  # noqa: N802
    return SimpleNamespace(total=141 << 30, used=1 << 30, free=140 << 30)


def nvmlSystemGetDriverVersion() -> str:  # noqa: N802
    return "999.99"
