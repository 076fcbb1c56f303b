"""Versions and hardware recorded with every result: anything that could change a number."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import evaluator
from evaluator.power.gpu import GpuIdentity
from evaluator.report.result import HostRecord, Versions


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


def host(gpu: GpuIdentity | None = None) -> HostRecord:
    """This machine, and the metered board ``gpu`` (None: no GPU could be read)."""
    return HostRecord(hostname=platform.node(), os=f"{platform.system()} {platform.release()}", cpu=cpu_model(),
                      cpu_count=os.cpu_count(), gpu=gpu)
