"""Which onnxruntime execution provider can run here, and why not when it cannot.

onnxruntime-gpu lists the CUDA provider even where CUDA is missing and only logs the failure;
loading the provider's library ourselves gives the real reason (the missing shared library).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
from pathlib import Path
from typing import Any

from evaluator.config import PROVIDERS
from evaluator.errors import ProviderError

CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
CPU_EP = "CPUExecutionProvider"
EXECUTION_PROVIDERS = {"tensorrt": TRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}


def ort() -> Any:
    """onnxruntime, imported on first use: `edl --help` should not pay for it."""
    import onnxruntime

    return onnxruntime


def _provider_library_error(name: str) -> str | None:
    """Load onnxruntime's provider library ourselves: its dynamic-loader error names what is missing."""
    library = Path(ort().__file__).parent / "capi" / f"libonnxruntime_providers_{name}.so"
    if not library.exists():
        return None
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return str(exc)
    return None


def _missing_library_advice(error: str) -> str:
    if "libcuda.so" in error:
        return ("the NVIDIA driver is not installed or not visible here (libcuda.so.1 is the driver's library): "
                "install the driver, or give the container the GPU (docker run --gpus all)")
    if "libcudnn" in error:
        return "cuDNN 9 is missing: pip install nvidia-cudnn-cu12 (or the system's cuDNN 9)"
    return "the CUDA runtime libraries are missing: install CUDA 12 or 13 to match this onnxruntime-gpu build"


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA provider cannot be created here, or None when it can be."""
    runtime = ort()
    if CUDA_EP not in runtime.get_available_providers():
        return f"this onnxruntime build ({runtime.__version__}) has no CUDA provider; install onnxruntime-gpu"
    if hasattr(runtime, "preload_dlls"):  # CUDA libraries from pip's nvidia-* wheels, when installed
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                runtime.preload_dlls(directory="")
            except Exception:  # noqa: BLE001 - best effort; the real probe follows
                pass
    if (error := _provider_library_error("cuda")) is not None:
        return f"the CUDA provider library cannot load ({error}): {_missing_library_advice(error)}"
    return None


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT provider cannot be created here, or None when it can (it also needs CUDA)."""
    runtime = ort()
    if TRT_EP not in runtime.get_available_providers():
        return f"this onnxruntime build ({runtime.__version__}) has no TensorRT provider; install onnxruntime-gpu"
    if (cuda := cuda_unavailable_reason()) is not None:
        return cuda
    if (error := _provider_library_error("tensorrt")) is not None:
        return f"TensorRT is not installed ({error}); install TensorRT 10 (pip install tensorrt) to use it"
    return None


def uses_gpu(requested: str) -> bool:
    """Whether a run asked for with ``requested`` would run on the GPU here."""
    return requested in ("cuda", "tensorrt") or (requested == "auto" and cuda_unavailable_reason() is None)


def resolve_provider(requested: str) -> tuple[str, str]:
    """The provider that will run, and why; never a silent substitute for an explicit request."""
    if requested not in PROVIDERS:
        raise ProviderError(f"unknown provider {requested!r}; choose {', '.join(PROVIDERS[:-1])} or {PROVIDERS[-1]}")
    if requested == "tensorrt":
        if (reason := tensorrt_unavailable_reason()) is not None:
            raise ProviderError(f"--provider tensorrt was asked for, but {reason}")
        return "tensorrt", "requested"
    if requested == "cpu":
        return "cpu", "requested"
    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda", "requested" if requested == "cuda" else "auto: the CUDA provider is available"
    if requested == "cuda":
        raise ProviderError(f"--provider cuda was asked for, but {reason}")
    return "cpu", f"auto: CUDA unavailable ({reason})"
