"""A small fake of the pynvml functions edl uses, driven by environment variables.

Environment variables cross into the ``spawn`` sampler process, so the real sampler can be run
against it. The energy counter is a pure function of ``time.monotonic()``: ``watts`` since the
module's epoch, optionally in NVML-like steps.

FAKE_NVML_MODE: comma-separated flags: ``absent`` (nvmlInit fails), ``no_counter``,
``no_instant`` (the field returns NotSupported), ``no_power``, ``no_clocks`` (clock readings NotSupported),
``lost`` (the temperature and clock readings fail with GpuIsLost, as a board that fell off the bus).
FAKE_NVML_WATTS, FAKE_NVML_STEP_S, FAKE_NVML_EPOCH (a monotonic time), FAKE_NVML_TEMPS (a list
of temperatures returned one after another, the last repeated), FAKE_NVML_NAME (the GPU's model name),
FAKE_NVML_INIT_DELAY_S (nvmlInit takes this long).

FAKE_NVML_PROFILE: a file of ``<monotonic time> <watts>`` lines, appended by the workload as it goes (see
``PowerProfile``): from each line's time on, every board draws that many watts (before the first, FAKE_NVML_WATTS);
the counter is their integral, in steps with FAKE_NVML_STEP_S, and instant power the watts now.

FAKE_NVML_GPUS: the boards, comma-separated, in NVML's index order: ``<uuid>@<pci bus id>``, then
``/<mig uuid>:<gpu instance>:<compute instance>`` for each MIG instance on the board; unset, one
board (``DEFAULT_GPUS``). FAKE_NVML_WATTS may list watts per board (the last repeated). Each board's
energy counter starts a gigajoule apart, so a reading tells which board it came from. A board's
serial is ``SN-`` and its UUID's first 8 hex digits. MIG handles have no energy or power, as on real GPUs.
"""

from __future__ import annotations

import bisect
import os
import time
from types import SimpleNamespace
from typing import NamedTuple

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
DEFAULT_GPUS = "GPU-fa4e0000-0000-4000-8000-000000000000@00000000:01:00.0"
MAX_MIG_DEVICES = 7
NVML_FI_DEV_POWER_INSTANT = 186
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
_temperature_calls = 0


class NVMLError(Exception):
    """As pynvml's: ``value`` is NVML's return code (pynvml maps each code to a subclass)."""

    value = 999  # NVML_ERROR_UNKNOWN


class NVMLError_NotSupported(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = NVML_ERROR_NOT_SUPPORTED


class NVMLError_NotFound(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = 6


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = 2


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = 12


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = 15


class NVMLError_NoPermission(NVMLError):  # noqa: N801, N818 - pynvml's own name
    value = 4


class Mig(NamedTuple):
    uuid: str
    gpu_instance: int
    compute_instance: int


class Board(NamedTuple):
    uuid: str
    bus_id: str
    migs: list[Mig]


def boards() -> list[Board]:
    """FAKE_NVML_GPUS parsed: ``uuid@busid[/mig-uuid:gi:ci...]``, comma-separated."""
    found = []
    for spec in filter(None, os.environ.get("FAKE_NVML_GPUS", DEFAULT_GPUS).split(",")):
        board, *migs = spec.strip().split("/")
        uuid, bus_id = board.split("@")
        found.append(Board(uuid, bus_id, [Mig(m.split(":")[0], int(m.split(":")[1]), int(m.split(":")[2]))
                                          for m in migs]))
    return found


def _mode() -> set[str]:
    return set(filter(None, os.environ.get("FAKE_NVML_MODE", "").split(",")))


def _watts(index: int = 0) -> float:
    watts = os.environ.get("FAKE_NVML_WATTS", "100").split(",")
    return float(watts[min(index, len(watts) - 1)])


class _Profile:
    """FAKE_NVML_PROFILE read incrementally: change times, watts, and the joules since the epoch at each change."""

    def __init__(self, path: str = "") -> None:
        self.path, self.offset = path, 0
        self.times: list[float] = []
        self.watts: list[float] = []
        self.joules: list[float] = []

    def update(self, epoch: float, base_w: float) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            t_s, watts = (float(v) for v in line.split())
            before_t, before_w = (self.times[-1], self.watts[-1]) if self.times else (epoch, base_w)
            before_j = self.joules[-1] if self.joules else 0.0
            self.times.append(t_s)
            self.watts.append(watts)
            self.joules.append(before_j + before_w * max(t_s - before_t, 0.0))

    def at(self, t_s: float, epoch: float, base_w: float) -> tuple[float, float]:
        """Joules since the epoch and watts at ``t_s``."""
        index = bisect.bisect_right(self.times, t_s) - 1
        if index < 0:
            return base_w * (t_s - epoch), base_w
        return self.joules[index] + self.watts[index] * (t_s - self.times[index]), self.watts[index]


_profile = _Profile()


def _power_at(index: int, t_s: float) -> tuple[float, float]:
    """Joules since the epoch and watts of board ``index`` at ``t_s``: FAKE_NVML_WATTS, or the profile."""
    epoch, base_w = float(os.environ.get("FAKE_NVML_EPOCH", "0")), _watts(index)
    path = os.environ.get("FAKE_NVML_PROFILE", "")
    if not path:
        return base_w * (t_s - epoch), base_w
    global _profile
    if _profile.path != path:
        _profile = _Profile(path)
    _profile.update(epoch, base_w)
    return _profile.at(t_s, epoch, base_w)


class PowerProfile:
    """The workload's side of FAKE_NVML_PROFILE: ``set(watts)`` from now on (call it as work starts and stops)."""

    def __init__(self, path: str) -> None:
        self.path = path
        open(path, "w").close()

    def set(self, watts: float) -> None:
        with open(self.path, "a") as handle:
            handle.write(f"{time.monotonic():.6f} {watts}\n")


def _board(handle: SimpleNamespace) -> int:
    """The board index of a board's handle; MIG handles have no meters of their own."""
    if getattr(handle, "mig", None) is not None:
        raise NVMLError_NotSupported("Not Supported")
    return handle.index


def nvmlInit() -> None:  # noqa: N802 - pynvml's own name
    time.sleep(float(os.environ.get("FAKE_NVML_INIT_DELAY_S", "0")))  # a driver slow to answer
    if "absent" in _mode():
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")


def nvmlShutdown() -> None:  # noqa: N802
    pass


def nvmlDeviceGetCount() -> int:  # noqa: N802
    return len(boards())


def nvmlDeviceGetHandleByIndex(index: int) -> object:  # noqa: N802
    if not 0 <= index < len(boards()):
        raise NVMLError_InvalidArgument("Invalid Argument")
    return SimpleNamespace(index=index, mig=None)


def nvmlDeviceGetHandleByUUID(uuid: str) -> object:  # noqa: N802
    for index, board in enumerate(boards()):
        if board.uuid == uuid:
            return SimpleNamespace(index=index, mig=None)
        for slot, mig in enumerate(board.migs):
            if mig.uuid == uuid:
                return SimpleNamespace(index=index, mig=slot)
    raise NVMLError_NotFound("Not Found")


def nvmlDeviceGetUUID(handle: SimpleNamespace) -> str:  # noqa: N802
    board = boards()[handle.index]
    return board.uuid if handle.mig is None else board.migs[handle.mig].uuid


def nvmlDeviceGetSerial(handle: SimpleNamespace) -> str:  # noqa: N802
    return "SN-" + boards()[_board(handle)].uuid.removeprefix("GPU-")[:8]


def nvmlDeviceGetPciInfo(handle: SimpleNamespace) -> SimpleNamespace:  # noqa: N802
    bus_id = boards()[handle.index].bus_id
    domain, bus, rest = bus_id.split(":")
    return SimpleNamespace(busId=bus_id.encode(), busIdLegacy=bus_id.encode(), domain=int(domain, 16),
                           bus=int(bus, 16), device=int(rest.split(".")[0], 16))


def nvmlDeviceGetMaxMigDeviceCount(handle: SimpleNamespace) -> int:  # noqa: N802
    if not boards()[_board(handle)].migs:
        raise NVMLError_NotSupported("Not Supported")
    return MAX_MIG_DEVICES


def nvmlDeviceGetMigDeviceHandleByIndex(handle: SimpleNamespace, index: int) -> object:  # noqa: N802
    if not 0 <= index < len(boards()[_board(handle)].migs):
        raise NVMLError_NotFound("Not Found")
    return SimpleNamespace(index=handle.index, mig=index)


def nvmlDeviceIsMigDeviceHandle(handle: SimpleNamespace) -> int:  # noqa: N802
    return int(handle.mig is not None)


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle: SimpleNamespace) -> object:  # noqa: N802
    if handle.mig is None:
        raise NVMLError_InvalidArgument("Invalid Argument")
    return SimpleNamespace(index=handle.index, mig=None)


def nvmlDeviceGetGpuInstanceId(handle: SimpleNamespace) -> int:  # noqa: N802
    if handle.mig is None:
        raise NVMLError_InvalidArgument("Invalid Argument")
    return boards()[handle.index].migs[handle.mig].gpu_instance


def nvmlDeviceGetComputeInstanceId(handle: SimpleNamespace) -> int:  # noqa: N802
    if handle.mig is None:
        raise NVMLError_InvalidArgument("Invalid Argument")
    return boards()[handle.index].migs[handle.mig].compute_instance


def nvmlDeviceGetTotalEnergyConsumption(handle: SimpleNamespace) -> int:  # noqa: N802
    index = _board(handle)
    if "no_counter" in _mode():
        raise NVMLError_NotSupported("Not Supported")
    epoch = float(os.environ.get("FAKE_NVML_EPOCH", "0"))
    elapsed = time.monotonic() - epoch
    step = float(os.environ.get("FAKE_NVML_STEP_S", "0"))
    if step > 0:
        elapsed = (elapsed // step) * step  # the joules up to the last step: NVML publishes every ~100 ms
    joules, _ = _power_at(index, epoch + elapsed)
    return int(5_000_000 + index * 1_000_000_000 + joules * 1000)  # mJ, from a start per board


def nvmlDeviceGetFieldValues(handle: SimpleNamespace, field_ids: list[int]) -> list[SimpleNamespace]:  # noqa: N802
    values = []
    for field_id in field_ids:
        supported = (field_id == NVML_FI_DEV_POWER_INSTANT and "no_instant" not in _mode()
                     and handle.mig is None)
        values.append(SimpleNamespace(
            fieldId=field_id,
            nvmlReturn=NVML_SUCCESS if supported else NVML_ERROR_NOT_SUPPORTED,
            value=SimpleNamespace(uiVal=int(_power_at(handle.index, time.monotonic())[1] * 1000) if supported else 0),
        ))
    return values


def nvmlDeviceGetPowerUsage(handle: SimpleNamespace) -> int:  # noqa: N802
    index = _board(handle)
    if "no_power" in _mode():
        raise NVMLError_NotSupported("Not Supported")
    return int(_power_at(index, time.monotonic())[1] * 1000)


def nvmlDeviceGetName(handle: object) -> str:  # noqa: N802
    return os.environ.get("FAKE_NVML_NAME", "Fake GPU")


def nvmlDeviceGetTemperature(handle: object, sensor: int) -> int:  # noqa: N802
    global _temperature_calls
    if "lost" in _mode():
        raise NVMLError_GpuIsLost("GPU is lost")
    temps = [int(t) for t in os.environ.get("FAKE_NVML_TEMPS", "40").split(",")]
    value = temps[min(_temperature_calls, len(temps) - 1)]
    _temperature_calls += 1
    return value


def nvmlDeviceGetClockInfo(handle: object, clock: int) -> int:  # noqa: N802
    if "lost" in _mode():
        raise NVMLError_GpuIsLost("GPU is lost")
    if "no_clocks" in _mode():
        raise NVMLError_NotSupported("Not Supported")
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
