"""The GPU a scoring runs on: one identity record, and one object to read it by (``open_gpu``).

Which board is metered is decided once, in the scoring process: the CUDA device the scorer runs on
(``--gpu``, read through CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER) becomes a board's UUID, and
everything after, the sampler process included, opens that UUID, never a position (CUDA and NVML
number GPUs differently). ``GpuIdentity`` is that board, wherever a GPU is named; ``Gpu`` reads it,
``NoGpu`` stands in where there is none and says why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from evaluator.errors import MeterError
from evaluator.power.base import MeterUnavailable
from evaluator.power.nvmllib import (
    Handle,
    NvmlError,
    NvmlNotFound,
    call,
    load_nvml,
    shutdown,
    supported,
    text,
)

VISIBLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"
PCI_ORDER = "PCI_BUS_ID"
FIX = (f"set {ORDER}={PCI_ORDER} (then CUDA numbers GPUs as NVML does), or name the GPU by UUID in {VISIBLE} "
       "(nvidia-smi -L lists them)")


def number_cuda_devices_as_nvml(environ: MutableMapping[str, str] | None = None) -> None:
    """CUDA numbers the boards in NVML's (PCI bus) order unless told otherwise: --gpu N is metered on the board it
    runs on. Set before CUDA initialises, by every process that scores (the CLI, the score-dir child)."""
    (os.environ if environ is None else environ).setdefault(ORDER, PCI_ORDER)


# Field metadata "doc" is typedjson's DOC key (power imports nothing of edl but the errors): the schema shows it.
@dataclass(frozen=True)
class GpuIdentity:
    """A board, by what outlives any numbering: the one record of a GPU's UUID, wherever a GPU is named."""

    uuid: str | None = field(default=None, metadata={"doc": "the board's UUID, as nvidia-smi -L shows it (null only "
                                                            "in results from before edl read it)"})
    name: str | None = field(default=None, metadata={"doc": "the GPU's model name, from NVML"})
    serial: str | None = field(default=None, metadata={"doc": "the board's serial number, where NVML gives one"})
    pci_bus_id: str | None = None
    mig_uuid: str | None = field(default=None, metadata={"doc": (
        "the MIG instance the model ran on, where it was one; the rest (and the energy) is the whole board's")})
    index: int | None = field(default=None, metadata={"doc": (
        "NVML's index of the board in the scoring process (NVML numbers by PCI bus id): it names the channels")})


@dataclass(frozen=True)
class GpuSnapshot:
    """One GPU's state at one moment: what a fair comparison needs to know was the same."""

    identity: GpuIdentity
    temperature_c: float | None
    sm_clock_mhz: float | None
    memory_clock_mhz: float | None
    power_limit_w: float | None
    clock_event_reasons: int | None
    other_compute_pids: list[int]
    memory_used_mib: int | None  # all processes on the GPU


@dataclass(frozen=True)
class _Board:
    """A board NVML enumerated: its handle, and what names it (UUID, PCI bus id, NVML index)."""

    handle: Handle
    identity: GpuIdentity

    @property
    def uuid(self) -> str:
        return self.identity.uuid or ""

    @property
    def pci_bus_id(self) -> str | None:
        return self.identity.pci_bus_id


def _bus_id(nvml: ModuleType, handle: Handle) -> str | None:
    info = supported(nvml, nvml.nvmlDeviceGetPciInfo, handle)
    return None if info is None else text(info.busId)


def _boards(nvml: ModuleType) -> list[_Board]:
    """Every board NVML sees, in NVML's order, with its UUID and PCI bus id."""
    boards = []
    for index in range(call(nvml, nvml.nvmlDeviceGetCount)):
        handle = call(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
        try:
            uuid = text(call(nvml, nvml.nvmlDeviceGetUUID, handle))
        except NvmlError as exc:
            raise MeterError(f"NVML cannot read GPU {index}'s UUID ({exc}): the metered GPU cannot be "
                             "identified") from None
        if not uuid:
            raise MeterError(f"NVML cannot read GPU {index}'s UUID: the metered GPU cannot be identified")
        boards.append(_Board(handle, GpuIdentity(uuid=uuid, pci_bus_id=_bus_id(nvml, handle), index=index)))
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


def _mig_instances(nvml: ModuleType, board: _Board) -> list[tuple[str, int, int]]:
    """The MIG instances on a board: UUID, GPU instance id, compute instance id (none on a board without MIG)."""
    found = []
    for slot in range(supported(nvml, nvml.nvmlDeviceGetMaxMigDeviceCount, board.handle) or 0):
        try:
            handle = call(nvml, nvml.nvmlDeviceGetMigDeviceHandleByIndex, board.handle, slot)
        except NvmlNotFound:  # an empty slot
            continue
        uuid = text(call(nvml, nvml.nvmlDeviceGetUUID, handle))
        if uuid:
            found.append((uuid, call(nvml, nvml.nvmlDeviceGetGpuInstanceId, handle),
                          call(nvml, nvml.nvmlDeviceGetComputeInstanceId, handle)))
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
    MeterUnavailable where NVML sees no GPU.
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
    return replace(board.identity, name=text(supported(nvml, nvml.nvmlDeviceGetName, board.handle)),
                   serial=text(supported(nvml, nvml.nvmlDeviceGetSerial, board.handle)), mig_uuid=mig)


def open_by_uuid(nvml: ModuleType, identity: GpuIdentity) -> Handle:
    """The handle of the board ``identity`` names, by its UUID; MeterUnavailable saying why where it is not here."""
    if identity.uuid is None:
        raise MeterUnavailable("a GPU recorded without a UUID cannot be opened: only a board open_gpu resolved is")
    try:
        return call(nvml, nvml.nvmlDeviceGetHandleByUUID, identity.uuid)
    except NvmlError as exc:
        raise MeterUnavailable(f"GPU {identity.uuid} (NVML index {identity.index} in the scoring process) cannot be "
                               f"opened by its UUID here: {exc}") from None


class Gpu:
    """The board a CUDA device runs on, opened by UUID once: its identity, state, temperature and driver."""

    def __init__(self, nvml: ModuleType, identity: GpuIdentity) -> None:
        self.nvml, self.identity = nvml, identity
        self.handle = open_by_uuid(nvml, identity)

    def temperature_c(self) -> float | None:
        """The GPU's temperature now; None where it has no sensor. Raises NvmlError (e.g. NvmlGpuLost)."""
        return supported(self.nvml, self.nvml.nvmlDeviceGetTemperature, self.handle, self.nvml.NVML_TEMPERATURE_GPU)

    def driver_version(self) -> str | None:
        return text(supported(self.nvml, self.nvml.nvmlSystemGetDriverVersion))

    def _clock_event_reasons(self) -> int | None:
        reasons = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            self.nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)  # older pynvml's name
        return None if reasons is None else supported(self.nvml, reasons, self.handle)

    def snapshot(self) -> GpuSnapshot:
        """The fairness record now: clocks, temperature, power limit, throttling, other processes.

        A reading the GPU does not support is None; any other NVML failure raises NvmlError."""
        nvml, handle = self.nvml, self.handle
        limit_mw = supported(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        processes = supported(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        memory = supported(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        return GpuSnapshot(
            identity=self.identity,
            temperature_c=self.temperature_c(),
            sm_clock_mhz=supported(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
            memory_clock_mhz=supported(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
            power_limit_w=None if limit_mw is None else limit_mw / 1e3,
            clock_event_reasons=self._clock_event_reasons(),
            other_compute_pids=sorted({int(p.pid) for p in processes if int(p.pid) != os.getpid()}),
            memory_used_mib=None if memory is None else round(memory.used / 2**20),
        )

    def close(self) -> None:
        shutdown(self.nvml)


@dataclass(frozen=True)
class NoGpu:
    """The null twin of ``Gpu``: no GPU can be read here, and ``reason`` says why (it goes in the result)."""

    reason: str
    identity: None = None

    def temperature_c(self) -> None:
        return None

    def driver_version(self) -> None:
        return None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        pass


def open_gpu(cuda_device: int, module: str = "", environ: Mapping[str, str] | None = None) -> Gpu | NoGpu:
    """The board CUDA device ``cuda_device`` runs on (see ``resolve_gpu``), or a NoGpu saying why there is none.

    Raises MeterError where the device cannot be told apart for sure: metering a guess is never done."""
    try:
        nvml = load_nvml(module)
        return Gpu(nvml, resolve_gpu(cuda_device, nvml, environ))
    except MeterUnavailable as exc:
        return NoGpu(str(exc))

