"""The meter: one object that a workload starts, marks windows on, and stops to get its samples.

Workload and measurement meet only through ``time.monotonic`` windows: the workload says when
something happened, the sampler process says what the power was, and arithmetic joins them later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evaluator.power.analysis import Samples, Window, load_samples
from evaluator.power.base import SourceSpec
from evaluator.power.gpu import Gpu, NoGpu, open_gpu
from evaluator.power.nvml import NvmlSpec
from evaluator.power.nvmllib import nvml_module_name
from evaluator.power.rapl import RaplSpec
from evaluator.power.sampler import Sampler


def default_specs(gpu_devices: tuple[int, ...] = (0,), nvml_module: str = "", powercap_root: str = ""
                  ) -> list[SourceSpec]:
    """The sources every measurement uses: the scored GPU(s) through NVML, the CPU through RAPL.

    ``gpu_devices`` are CUDA device ids, as the provider's ``--gpu``; NVML's own numbering may differ, so
    each is resolved here (``open_gpu``) to its board's UUID, which the sampler process opens. Raises
    MeterError where the board cannot be told for sure (``resolve_gpu`` says why and how to fix it).
    """
    module = nvml_module or nvml_module_name()
    opened = [open_gpu(device, module) for device in gpu_devices]
    for gpu in opened:
        gpu.close()  # the identity is what crosses into the sampler process
    missing = next((gpu.reason for gpu in opened if isinstance(gpu, NoGpu)), "")
    boards = () if missing else tuple(gpu.identity for gpu in opened if isinstance(gpu, Gpu))
    return [NvmlSpec(gpus=boards, module=module, unavailable=missing), RaplSpec(root=powercap_root)]


class Meter:
    """Samples power in a separate process while the caller marks windows; ``stop`` returns the samples.

    A disabled meter still marks windows (so timings are reported), but samples nothing.
    """

    def __init__(self, samples_path: Path, gpu_devices: tuple[int, ...], period_s: float, enabled: bool = True,
                 specs: list[SourceSpec] | None = None) -> None:
        self.samples_path = Path(samples_path)
        self.period_s = period_s
        self.windows: list[Window] = []
        self._sampler = Sampler(specs or default_specs(gpu_devices), self.samples_path, period_s) if enabled else None

    @property
    def enabled(self) -> bool:
        return self._sampler is not None

    @property
    def channels(self) -> list[dict]:
        """What the started sampler reads (empty: no NVML and no RAPL here, or a disabled meter)."""
        return self._sampler.channels if self._sampler is not None else []

    def start(self) -> None:
        if self._sampler is not None:
            self.samples_path.unlink(missing_ok=True)
            self._sampler.start()

    @contextmanager
    def window(self, name: str) -> Iterator[None]:
        """Mark the span of the ``with`` block as window ``name``."""
        start = time.monotonic()
        yield
        self.windows.append(Window(name, start, time.monotonic()))

    def mark(self, window: Window) -> None:
        """Record a window measured by the caller (e.g. one per pass)."""
        self.windows.append(window)

    def find(self, name: str) -> Window | None:
        return next((w for w in self.windows if w.name == name), None)

    def stop(self) -> Samples | None:
        """Record a sample beyond the last window's end, stop the sampler and read what it wrote.

        Raises MeterError when the sampler died or hung: such a measurement is invalid, not low.
        """
        if self._sampler is None:
            return None
        time.sleep(max(2 * self.period_s, 0.02))
        self._sampler.stop()
        return load_samples(self.samples_path)

    def close(self) -> None:
        """Stop the sampler process however the run ended; idempotent."""
        if self._sampler is not None:
            self._sampler.close()

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
