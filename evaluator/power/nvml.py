"""GPU energy and power through NVML, in the sampler process.

The total-energy counter (mJ, Volta and newer) is the source of truth. Instant power
(``NVML_FI_DEV_POWER_INSTANT``) draws the timeline; ``nvmlDeviceGetPowerUsage`` is a last resort,
since on recent GPUs it is a 1 s average. The boards were resolved in the scoring process
(``evaluator.power.gpu``); the sampler opens each by its UUID, never by a position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evaluator.power.base import ENERGY, POWER, Channel, MeterUnavailable, PowerSource
from evaluator.power.gpu import GpuIdentity, open_by_uuid
from evaluator.power.nvmllib import Handle, NvmlError, call, load_nvml, shutdown, supported


@dataclass
class GpuMeter:
    """One GPU's handle and how its energy and power are read."""

    index: int
    handle: Handle
    energy_counter: bool
    power_method: str  # instant | average
    notes: list[str] = field(default_factory=list)


class NvmlSource(PowerSource):
    """Energy counter and instant power of the GPUs being scored on."""

    name = "nvml"

    def __init__(self, gpus: tuple[GpuIdentity, ...], module: str = "") -> None:
        """``gpus``: boards resolved in the scoring process (``open_gpu``), opened here by UUID."""
        self.nvml = load_nvml(module)
        self.gpus: list[GpuMeter] = []
        for gpu in gpus:
            if gpu.index is None:
                raise MeterUnavailable(f"GPU {gpu.uuid} has no NVML index: only a board open_gpu resolved is metered")
            try:
                meter = self._probe(gpu.index, open_by_uuid(self.nvml, gpu))
            except NvmlError as exc:
                raise MeterUnavailable(f"GPU {gpu.uuid} cannot be metered: {exc}") from None
            if gpu.mig_uuid:
                meter.notes.append(f"CUDA runs on MIG instance {gpu.mig_uuid}: the whole board's energy is metered, "
                                   "every instance on it")
            self.gpus.append(meter)

    def _probe(self, index: int, handle: Handle) -> GpuMeter:
        notes = []
        energy_counter = supported(self.nvml, self.nvml.nvmlDeviceGetTotalEnergyConsumption, handle) is not None
        if not energy_counter:
            notes.append("no total-energy counter (pre-Volta GPU?): energy integrates power instead")
        if self._instant_power_mw(handle) is not None:
            power_method = "instant"
        elif supported(self.nvml, self.nvml.nvmlDeviceGetPowerUsage, handle) is not None:
            power_method = "average"
            notes.append("NVML_FI_DEV_POWER_INSTANT unsupported: the timeline uses nvmlDeviceGetPowerUsage (averaged)")
        else:
            power_method = "none"
            notes.append("no power reading at all")
        if not energy_counter and power_method == "none":
            raise MeterUnavailable(f"GPU {index} offers neither an energy counter nor a power reading")
        return GpuMeter(index, handle, energy_counter, power_method, notes)

    def _instant_power_mw(self, handle: Handle) -> float | None:
        """Instant power, or None where this GPU does not give the field (each field has its own return code)."""
        values = supported(self.nvml, self.nvml.nvmlDeviceGetFieldValues, handle,
                           [self.nvml.NVML_FI_DEV_POWER_INSTANT])
        if not values or values[0].nvmlReturn != self.nvml.NVML_SUCCESS:
            return None
        return float(values[0].value.uiVal)

    def _reading(self, gpu: GpuMeter, kind: str) -> float:
        """One reading in J or W; NaN where this one reading failed (the sampler's protocol for a dropped sample)."""
        try:
            if kind == ENERGY:
                return float(call(self.nvml, self.nvml.nvmlDeviceGetTotalEnergyConsumption, gpu.handle)) / 1e3
            if gpu.power_method == "instant":
                power_mw = self._instant_power_mw(gpu.handle)
                return math.nan if power_mw is None else power_mw / 1e3
            return float(call(self.nvml, self.nvml.nvmlDeviceGetPowerUsage, gpu.handle)) / 1e3
        except NvmlError:
            return math.nan

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
                values.append(self._reading(gpu, ENERGY))
            if gpu.power_method != "none":
                values.append(self._reading(gpu, POWER))
        return values

    def close(self) -> None:
        shutdown(self.nvml)


@dataclass(frozen=True)
class NvmlSpec:
    """Picklable recipe: the boards resolved in the scoring process (opened by UUID, so both processes meter
    the same boards however each numbers them), and which module provides the NVML functions."""

    gpus: tuple[GpuIdentity, ...] = ()
    module: str = ""  # "": EDL_NVML_MODULE, else pynvml, resolved where the source opens
    name: str = "nvml"
    unavailable: str = ""  # why the scoring process resolved no board (a NoGpu's reason): the sampler reports it

    def open(self) -> NvmlSource:
        if not self.gpus:
            raise MeterUnavailable(self.unavailable or "no GPU was resolved to meter")
        return NvmlSource(self.gpus, self.module)
