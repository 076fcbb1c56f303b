"""The GPU's thermal state before a measurement: a fair start means the same temperature for everyone.

The cool-down waits, bounded by ``cooldown_s``, until the GPU is within ``temp_band_c`` of the
target temperature; with no target, until the temperature has held steady (within half the band)
for ``SETTLE_S``. NVML is opened in the scoring process for this and for the fairness record; the
energy itself is read by the sampler process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from evaluator.config import MeterConfig
from evaluator.errors import MeterError
from evaluator.events import EventSink, Waiting, silent
from evaluator.power.gpu import Gpu, GpuIdentity, NoGpu, open_gpu
from evaluator.report.result import Cooldown, GpuState
from evaluator.scoring.records import gpu_record

SETTLE_S = 10.0
POLL_S = 1.0


class GpuWatch:
    """The GPU in the scoring process, for the fairness record and the cool-down (not for energy)."""

    def __init__(self, cuda_device: int) -> None:
        self.gpu: Gpu | NoGpu = open_gpu(cuda_device)  # by UUID: the board CUDA runs on, MIG noted

    @property
    def reason(self) -> str:
        """Why no GPU can be read here; "" where one can."""
        return self.gpu.reason if isinstance(self.gpu, NoGpu) else ""

    @property
    def identity(self) -> GpuIdentity | None:
        return self.gpu.identity

    def record(self) -> GpuState | None:
        """The GPU's state now, for the result (None without a GPU): a failure to read it is recorded, not raised."""
        try:
            return gpu_record(self.gpu.snapshot())
        except MeterError as exc:  # NvmlGpuLost, NvmlNoPermission...
            return gpu_record(None, str(exc))

    def temperature_c(self) -> float | None:
        """The temperature now; None where it cannot be read (no GPU, no sensor, or the GPU failed to answer)."""
        try:
            return self.gpu.temperature_c()
        except MeterError:  # a GPU that cannot be read has no temperature: the cool-down says so
            return None

    def driver(self) -> str | None:
        return self.gpu.driver_version()


def settled(history: list[tuple[float, float]], band_c: float, target_c: float | None) -> bool:
    """Within the band of the target; or, without one, steady within half the band over the last SETTLE_S."""
    now, temperature = history[-1]
    if target_c is not None:
        return temperature <= target_c + band_c
    recent = [t for s, t in history if s >= now - SETTLE_S]
    return now - history[0][0] >= SETTLE_S and max(recent) - min(recent) <= band_c / 2


def cool_down(watch: GpuWatch, meter: MeterConfig, sink: EventSink = silent,
              sleep: Callable[[float], None] = time.sleep) -> Cooldown:
    """Wait (bounded) until the GPU temperature settles within the band of the target; say how it went.

    It emits a ``Waiting`` (the time left of the bound, the temperature read) as it starts and at each poll."""
    if isinstance(watch.gpu, NoGpu):
        return Cooldown(skipped=f"no GPU temperature: {watch.reason}")
    first = watch.temperature_c()
    if first is None or meter.cooldown_s <= 0:
        return Cooldown(start_c=first, skipped="cool-down disabled" if first is not None else
                        "temperature not readable")
    sink(Waiting("cooldown", meter.cooldown_s, f"GPU at {first:.0f} C"))
    deadline = time.monotonic() + meter.cooldown_s
    history: list[tuple[float, float]] = []
    reached = False
    while (temperature := watch.temperature_c()) is not None:
        history.append((time.monotonic(), float(temperature)))
        reached = settled(history, meter.temp_band_c, meter.target_temp_c)
        if reached or history[-1][0] >= deadline:
            break
        sink(Waiting("cooldown", max(0.0, deadline - history[-1][0]), f"GPU at {temperature:.0f} C"))
        sleep(POLL_S)
    return Cooldown(start_c=first, end_c=history[-1][1] if history else first, target_c=meter.target_temp_c,
                    band_c=meter.temp_band_c, reached=reached,
                    waited_s=(history[-1][0] - history[0][0]) if history else 0.0)
