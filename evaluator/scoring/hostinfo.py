"""Versions and hardware recorded with every result: anything that could change a number."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import evaluator
from evaluator.report.result import GpuState, HostRecord, Versions


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(driver: str | None = None) -> Versions:
    import numpy
    import onnx
    import onnxruntime

    return Versions(
        evaluator=evaluator.__version__,
        python=platform.python_version(),
        onnxruntime=onnxruntime.__version__,
        onnxruntime_distribution="onnxruntime-gpu" if _version("onnxruntime-gpu") else "onnxruntime",
        onnx=onnx.__version__,
        numpy=numpy.__version__,
        nvidia_ml_py=_version("nvidia-ml-py"),
        gpu_driver=driver,
    )


def host(gpu: GpuState | None = None) -> HostRecord:
    """This machine, and the GPU ``gpu`` (the fairness record of the metered board) by name and identity."""
    return HostRecord(hostname=platform.node(), os=f"{platform.system()} {platform.release()}", cpu=cpu_model(),
                      cpu_count=os.cpu_count(), gpu=gpu.name if gpu else None, gpu_uuid=gpu.uuid if gpu else None,
                      gpu_serial=gpu.serial if gpu else None, gpu_pci_bus_id=gpu.pci_bus_id if gpu else None,
                      gpu_mig_uuid=gpu.mig_uuid if gpu else None)
