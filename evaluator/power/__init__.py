"""Power sources (one module each), the sampler process, and window arithmetic."""

from __future__ import annotations

from evaluator.power.base import SourceSpec
from evaluator.power.nvml import NvmlSpec, nvml_index
from evaluator.power.rapl import RaplSpec


def default_specs(gpu_indices: tuple[int, ...] = (0,), nvml_module: str = "pynvml",
                  powercap_root: str = "") -> list[SourceSpec]:
    """The sources every measurement uses: the scored GPU(s) through NVML, the CPU through RAPL.

    ``gpu_indices`` are CUDA device ids, as the provider's ``--gpu``; NVML's own numbering may differ.
    """
    nvml_indices = tuple(nvml_index(device) for device in gpu_indices)
    return [NvmlSpec(gpu_indices=nvml_indices, module=nvml_module), RaplSpec(root=powercap_root)]
