"""The NVML library (``nvidia-ml-py``, imported as ``pynvml``) loaded, and its failures as typed errors.

Every NVML call edl makes goes through ``call`` (an NVMLError becomes one of the ``NvmlError`` family
below, by NVML's return code) or ``supported`` (None where the GPU does not offer the reading, and
only then). The module is imported by name so tests can hand in a small fake of the functions used.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from evaluator.errors import MeterError
from evaluator.power.base import MeterUnavailable

DEFAULT_MODULE = "pynvml"
T = TypeVar("T")
Handle = Any  # an NVML device handle (a ctypes pointer in pynvml): opaque to edl


class NvmlError(MeterError):
    """An NVML call failed; ``code`` is NVML's return code (None where the library gave none)."""

    codes: tuple[int, ...] = ()

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NvmlInvalidArgument(NvmlError):  # noqa: N818 - NVML's own names for its return codes
    codes = (2,)  # NVML_ERROR_INVALID_ARGUMENT: e.g. a handle of the wrong kind (a board's where a MIG's is asked)


class NvmlNotSupported(NvmlError):  # noqa: N818 - NVML's own names for its return codes
    codes = (3,)  # NVML_ERROR_NOT_SUPPORTED: this GPU does not offer the reading (the only error read as "none")


class NvmlNoPermission(NvmlError):  # noqa: N818 - NVML's own names for its return codes
    codes = (4,)  # NVML_ERROR_NO_PERMISSION


class NvmlNotFound(NvmlError):  # noqa: N818 - NVML's own names for its return codes
    codes = (6, 28)  # NVML_ERROR_NOT_FOUND, NVML_ERROR_GPU_NOT_FOUND


class NvmlGpuLost(NvmlError):  # noqa: N818 - NVML's own names for its return codes
    codes = (15, 16)  # NVML_ERROR_GPU_IS_LOST, NVML_ERROR_RESET_REQUIRED: fell off the bus; nothing it says counts


_BY_CODE = {code: kind for kind in (NvmlInvalidArgument, NvmlNotSupported, NvmlNoPermission, NvmlNotFound,
                                    NvmlGpuLost) for code in kind.codes}


def typed_error(exc: BaseException, what: str) -> NvmlError:
    """The ``NvmlError`` for pynvml's NVMLError ``exc`` (raised by ``what``), by its return code."""
    code = getattr(exc, "value", None)
    code = code if isinstance(code, int) else None
    kind = _BY_CODE.get(code, NvmlError) if code is not None else NvmlError
    return kind(f"{what}: {exc}", code)


def call(nvml: ModuleType, function: Callable[..., T], *args: object) -> T:
    """``function(*args)``, an NVML call; its NVMLError raised as the typed ``NvmlError``."""
    try:
        return function(*args)
    except nvml.NVMLError as exc:
        raise typed_error(exc, getattr(function, "__name__", "NVML")) from None


def supported(nvml: ModuleType, function: Callable[..., T], *args: object) -> T | None:
    """``call``, or None where the GPU does not support it (NotSupported); every other failure raises."""
    try:
        return call(nvml, function, *args)
    except NvmlNotSupported:
        return None


def text(value: object) -> str | None:
    """NVML's strings (bytes from older pynvml), or None where NVML gave nothing."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_module_name() -> str:
    """``EDL_NVML_MODULE`` names another module with pynvml's functions (tests use a fake); else pynvml."""
    return os.environ.get("EDL_NVML_MODULE", DEFAULT_MODULE)


def load_nvml(module: str = "") -> ModuleType:
    """Import and initialise NVML (``module``, else ``nvml_module_name()``), or raise MeterUnavailable saying why."""
    module = module or nvml_module_name()
    try:
        nvml = importlib.import_module(module)
    except ImportError as exc:
        raise MeterUnavailable(f"{module} is not installed ({exc}); pip install nvidia-ml-py") from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:  # LibraryNotFound, DriverNotLoaded, ...: this host cannot meter a GPU
        raise MeterUnavailable(
            f"NVML cannot initialise ({exc}): no NVIDIA GPU or driver here, or the container lacks the driver's "
            "libnvidia-ml.so"
        ) from None
    return nvml


def shutdown(nvml: ModuleType) -> None:
    """Release NVML; a driver that fails to let go changes nothing already read."""
    try:
        call(nvml, nvml.nvmlShutdown)
    except NvmlError:
        pass
