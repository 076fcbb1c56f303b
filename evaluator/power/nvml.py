"""GPU energy and power through NVML (``nvidia-ml-py``, imported as ``pynvml``).

The total-energy counter (mJ, Volta and newer) is the source of truth. Instant power
(``NVML_FI_DEV_POWER_INSTANT``) draws the timeline; ``nvmlDeviceGetPowerUsage`` is a last resort,
since on recent GPUs it is a 1 s average. The module is imported by name so tests can hand in a
small fake of the functions used here.

Which board is metered is decided once, in the scoring process, by ``resolve_gpu``: the CUDA device
the scorer runs on, read through CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, becomes a board's UUID,
and the sampler process opens that UUID, never a position (CUDA and NVML number GPUs differently).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from evaluator.errors import MeterError
from evaluator.power.base import ENERGY, POWER, Channel, MeterUnavailable

DEFAULT_MODULE = "pynvml"
VISIBLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"
PCI_ORDER = "PCI_BUS_ID"
FIX = (f"set {ORDER}={PCI_ORDER} (then CUDA numbers GPUs as NVML does), or name the GPU by UUID in {VISIBLE} "
       "(nvidia-smi -L lists them)")


def number_cuda_devices_as_nvml(environ: MutableMapping[str, str] | None = None) -> None:
    """CUDA numbers the boards in NVML's (PCI bus) order unless told otherwise: --gpu N is metered on the board it
    runs on. Set before CUDA initialises, by every process that scores (the CLI, the score-dir child)."""
    (os.environ if environ is None else environ).setdefault(ORDER, PCI_ORDER)


def nvml_module_name() -> str:
    """``EDL_NVML_MODULE`` names another module with pynvml's functions (tests use a fake); else pynvml."""
    return os.environ.get("EDL_NVML_MODULE", DEFAULT_MODULE)


def _guessed_index(cuda_device: int) -> int:
    """Without NVML: the index numeric CUDA_VISIBLE_DEVICES entries give (nothing will be read from it anyway)."""
    visible = [part.strip() for part in os.environ.get(VISIBLE, "").split(",") if part.strip()]
    if visible and all(part.isdigit() for part in visible) and cuda_device < len(visible):
        return int(visible[cuda_device])
    return cuda_device


def nvml_index(cuda_device: int, module: str = "") -> int:
    """The NVML index of the board CUDA device ``cuda_device`` runs on, resolved by UUID (``resolve_gpu``).

    Where NVML cannot be loaded, the index numeric CUDA_VISIBLE_DEVICES entries give. Raises MeterError
    where the device cannot be told apart for sure (see ``resolve_gpu``).
    """
    try:
        return resolve_gpu(cuda_device, load_nvml(module)).index
    except MeterUnavailable:
        return _guessed_index(cuda_device)


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


def _text(value: object) -> str | None:
    """NVML's strings (bytes from older pynvml), or None where NVML gave nothing."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _bus_id(nvml: ModuleType, handle: object) -> str | None:
    info = _try(nvml.nvmlDeviceGetPciInfo, handle)
    return None if info is None else _text(info.busId)


@dataclass(frozen=True)
class GpuIdentity:
    """The metered board, by what outlives any numbering: UUID, serial, PCI bus id."""

    index: int  # NVML's index of the board: it names the channels (gpu0_energy_j...)
    uuid: str
    serial: str | None
    pci_bus_id: str | None
    name: str | None
    mig_uuid: str | None = None  # the MIG instance CUDA runs on; the board's meters count all its instances


@dataclass(frozen=True)
class _Board:
    index: int
    handle: object
    uuid: str
    pci_bus_id: str | None


def _boards(nvml: ModuleType) -> list[_Board]:
    """Every board NVML sees, in NVML's order, with its UUID and PCI bus id."""
    boards = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(_try(nvml.nvmlDeviceGetUUID, handle))
        if not uuid:
            raise MeterError(f"NVML cannot read GPU {index}'s UUID: the metered GPU cannot be identified")
        boards.append(_Board(index, handle, uuid, _bus_id(nvml, handle)))
    if not boards:
        raise MeterUnavailable("NVML sees no GPU")
    return boards


def _by_prefix(entry: str, candidates: list[tuple[str, Any]], where: str) -> Any:
    """The candidate whose UUID is ``entry``, else the only one it begins (CUDA accepts a unique prefix)."""
    wanted = entry.lower()
    exact = [found for uuid, found in candidates if uuid.lower() == wanted]
    matches = exact or [found for uuid, found in candidates if uuid.lower().startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(uuid for uuid, _ in candidates) or "none"
    if matches:
        raise MeterError(f"{where} is the beginning of {len(matches)} UUIDs ({known}): give more of it")
    raise MeterError(f"{where} matches no GPU here (UUIDs: {known}); nvidia-smi -L lists them")


def _by_cuda_position(position: int, boards: list[_Board], pci_order: bool, where: str) -> _Board:
    """The board at ``position`` in CUDA's own order: the PCI bus order with CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    if len(boards) > 1 and not pci_order:
        raise MeterError(
            f"{where} is a position in CUDA's order, fastest first by default, which may not be NVML's: the wrong "
            f"GPU of the {len(boards)} here could be metered. Refusing to guess: {FIX}")
    if len(boards) > 1 and any(board.pci_bus_id is None for board in boards):
        raise MeterError(f"{where}: NVML does not give every GPU's PCI bus id, so CUDA's order is unknown; name the "
                         f"GPU by UUID in {VISIBLE} (nvidia-smi -L lists them)")
    ordered = sorted(boards, key=lambda board: (board.pci_bus_id or "").upper())
    if not 0 <= position < len(ordered):
        raise MeterError(f"{where} matches no GPU here: NVML sees {len(ordered)}; check --gpu and {VISIBLE}")
    return ordered[position]


def _mig_instances(nvml: ModuleType, board: _Board) -> list[tuple[str, int | None, int | None]]:
    """The MIG instances on a board: UUID, GPU instance id, compute instance id."""
    found = []
    for slot in range(_try(nvml.nvmlDeviceGetMaxMigDeviceCount, board.handle) or 0):
        handle = _try(nvml.nvmlDeviceGetMigDeviceHandleByIndex, board.handle, slot)
        uuid = None if handle is None else _text(_try(nvml.nvmlDeviceGetUUID, handle))
        if uuid:
            found.append((uuid, _try(nvml.nvmlDeviceGetGpuInstanceId, handle),
                          _try(nvml.nvmlDeviceGetComputeInstanceId, handle)))
    return found


def _by_mig_id(nvml: ModuleType, entry: str, boards: list[_Board], where: str) -> tuple[_Board, str]:
    """A MIG instance's board and UUID, from ``MIG-<uuid>`` or the older ``MIG-GPU-<uuid>/<gi>/<ci>``."""
    if "/" not in entry:
        candidates = [(uuid, (board, uuid)) for board in boards for uuid, _, _ in _mig_instances(nvml, board)]
        board, uuid = _by_prefix(entry, candidates, where)
        return board, uuid
    parts = entry[len("MIG-"):].split("/")
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        raise MeterError(f"{where} is not a MIG id (MIG-<uuid>, or MIG-GPU-<uuid>/<gi>/<ci>)")
    board = _by_prefix(parts[0], [(b.uuid, b) for b in boards], where)
    for uuid, gpu_instance, compute_instance in _mig_instances(nvml, board):
        if (gpu_instance, compute_instance) == (int(parts[1]), int(parts[2])):
            return board, uuid
    raise MeterError(f"{where}: GPU {board.uuid} has no MIG instance {parts[1]}/{parts[2]}")


def _by_entry(nvml: ModuleType, entry: str, boards: list[_Board], pci_order: bool, where: str
              ) -> tuple[_Board, str | None]:
    """The board (and MIG instance) one CUDA_VISIBLE_DEVICES entry names."""
    if entry.isdigit():
        return _by_cuda_position(int(entry), boards, pci_order, where), None
    if entry.upper().startswith("MIG-"):
        return _by_mig_id(nvml, entry, boards, where)
    if entry.upper().startswith("GPU-"):
        return _by_prefix(entry, [(board.uuid, board) for board in boards], where), None
    raise MeterError(f"{where} matches no GPU: give an index, a GPU-<uuid> or a MIG-<uuid>")


def resolve_gpu(cuda_device: int, nvml: ModuleType | None = None, environ: Mapping[str, str] | None = None
                ) -> GpuIdentity:
    """The board CUDA device ``cuda_device`` (``--gpu``, a position among the visible devices) runs on.

    CUDA_VISIBLE_DEVICES entries may be indices in CUDA's order, GPU UUIDs (or a unique beginning of one)
    or MIG ids (then the MIG instance's board is metered, and the instance noted). CUDA's order is NVML's,
    the PCI bus order, only with CUDA_DEVICE_ORDER=PCI_BUS_ID; an index under the default fastest-first
    order is refused where more than one GPU exists. Raises MeterError saying why and how to fix it;
    MeterUnavailable where NVML sees no GPU (the sampler process will report it unavailable).
    """
    nvml = nvml if nvml is not None else load_nvml()
    environ = os.environ if environ is None else environ
    boards = _boards(nvml)
    pci_order = environ.get(ORDER, "").strip().upper() == PCI_ORDER
    visible = environ.get(VISIBLE)
    if visible is None:
        board, mig = _by_cuda_position(cuda_device, boards, pci_order, f"CUDA device {cuda_device}"), None
    else:
        entries = [part.strip() for part in visible.split(",")] if visible.strip() else []
        if not 0 <= cuda_device < len(entries):
            raise MeterError(f"CUDA device {cuda_device} is not visible: {VISIBLE}={visible!r} lists "
                             f"{len(entries)}; check --gpu")
        entry = entries[cuda_device]
        board, mig = _by_entry(nvml, entry, boards, pci_order, f"CUDA device {cuda_device} ({VISIBLE} entry {entry!r})")
    return GpuIdentity(index=board.index, uuid=board.uuid, serial=_text(_try(nvml.nvmlDeviceGetSerial, board.handle)),
                       pci_bus_id=board.pci_bus_id, name=_text(_try(nvml.nvmlDeviceGetName, board.handle)),
                       mig_uuid=mig)


def resolve_gpus(cuda_devices: tuple[int, ...], module: str = "") -> tuple[GpuIdentity, ...] | None:
    """``resolve_gpu`` for each device; None where NVML cannot be used here (the sampler will say why)."""
    try:
        nvml = load_nvml(module)
        return tuple(resolve_gpu(device, nvml) for device in cuda_devices)
    except MeterUnavailable:
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

    def __init__(self, gpus: tuple[int | GpuIdentity, ...], module: str = "") -> None:
        """``gpus``: boards resolved by ``resolve_gpu`` (opened by UUID), or NVML indices."""
        self.nvml = load_nvml(module)
        self.gpus: list[GpuMeter] = []
        for gpu in gpus:
            index, handle = self._open(gpu)
            meter = self._probe(index, handle)
            if isinstance(gpu, GpuIdentity) and gpu.mig_uuid:
                meter.notes.append(f"CUDA runs on MIG instance {gpu.mig_uuid}: the whole board's energy is metered, "
                                   "every instance on it")
            self.gpus.append(meter)

    def _open(self, gpu: int | GpuIdentity) -> tuple[int, object]:
        if isinstance(gpu, GpuIdentity):
            try:
                return gpu.index, self.nvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
            except Exception as exc:  # noqa: BLE001 - NotFound, GpuIsLost...
                raise MeterUnavailable(f"GPU {gpu.uuid} (NVML index {gpu.index} in the scoring process) cannot be "
                                       f"opened by its UUID here: {exc}") from None
        count = self.nvml.nvmlDeviceGetCount()
        if not 0 <= gpu < count:
            raise MeterUnavailable(f"GPU {gpu} does not exist (NVML sees {count}); check --gpu")
        return gpu, self.nvml.nvmlDeviceGetHandleByIndex(gpu)

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
    """Picklable recipe: which GPUs, and which module provides the NVML functions.

    ``gpus``, resolved in the scoring process, are opened by UUID, so both processes meter the same
    boards however each numbers them; without them (no NVML in the scoring process), ``gpu_indices``.
    """

    gpu_indices: tuple[int, ...] = (0,)
    module: str = ""  # "": EDL_NVML_MODULE, else pynvml, resolved where the source opens
    name: str = "nvml"
    gpus: tuple[GpuIdentity, ...] = ()

    def open(self) -> NvmlSource:
        return NvmlSource(self.gpus or self.gpu_indices, self.module)


@dataclass(frozen=True)
class GpuSnapshot:
    """One GPU's state at one moment: what a fair comparison needs to know was the same."""

    index: int
    name: str | None
    uuid: str | None
    serial: str | None
    pci_bus_id: str | None
    mig_uuid: str | None  # the MIG instance CUDA runs on, where it is one; the rest is the board's
    temperature_c: float | None
    sm_clock_mhz: float | None
    memory_clock_mhz: float | None
    power_limit_w: float | None
    clock_event_reasons: int | None
    other_compute_pids: list[int]
    memory_used_mib: int | None  # all processes on the GPU


def gpu_state(nvml: ModuleType, gpu: int | GpuIdentity) -> GpuSnapshot:
    """The fairness record of one GPU (a resolved board, opened by UUID, or an NVML index): its identity,
    clocks, temperature, power limit, throttling, other processes."""
    if isinstance(gpu, GpuIdentity):
        index, handle, mig_uuid = gpu.index, nvml.nvmlDeviceGetHandleByUUID(gpu.uuid), gpu.mig_uuid
    else:
        index, handle, mig_uuid = gpu, nvml.nvmlDeviceGetHandleByIndex(gpu), None
    reasons_call = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    limit_mw = _try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    processes = _try(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    memory = _try(nvml.nvmlDeviceGetMemoryInfo, handle)
    return GpuSnapshot(
        index=index,
        name=_text(_try(nvml.nvmlDeviceGetName, handle)),
        uuid=_text(_try(nvml.nvmlDeviceGetUUID, handle)),
        serial=_text(_try(nvml.nvmlDeviceGetSerial, handle)),
        pci_bus_id=_bus_id(nvml, handle),
        mig_uuid=mig_uuid,
        temperature_c=_try(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        sm_clock_mhz=_try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        memory_clock_mhz=_try(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        power_limit_w=None if limit_mw is None else limit_mw / 1e3,
        clock_event_reasons=_try(reasons_call, handle) if reasons_call else None,
        other_compute_pids=sorted({int(p.pid) for p in processes if int(p.pid) != os.getpid()}),
        memory_used_mib=None if memory is None else round(memory.used / 2**20),
    )


def driver_version(nvml: ModuleType) -> str | None:
    return _text(_try(nvml.nvmlSystemGetDriverVersion))
