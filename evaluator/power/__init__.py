"""Power sources (one module each), the sampler process, and window arithmetic."""

from __future__ import annotations

from evaluator.power.base import SourceSpec
from evaluator.power.nvml import NvmlSpec
from evaluator.power.rapl import RaplSpec


def default_specs(gpu_indices: tuple[int, ...] = (0,), nvml_module: str = "pynvml",
                  powercap_root: str = "") -> list[SourceSpec]:
    """The sources every measurement uses: the scored GPU(s) through NVML, the CPU through RAPL."""
    return [NvmlSpec(gpu_indices=gpu_indices, module=nvml_module), RaplSpec(root=powercap_root)]
