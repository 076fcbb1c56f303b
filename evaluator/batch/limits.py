"""Operating-system limits on each scoring child: a backstop behind --timeout and the checks."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass

from evaluator.runtime.providers import uses_gpu

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildLimits:
    cpu_seconds: int | None  # RLIMIT_CPU: CPU time over all threads
    address_space_bytes: int | None  # RLIMIT_AS: only for CPU runs (CUDA maps huge virtual ranges)

    def apply(self) -> None:
        """Runs in the child before exec."""
        try:  # SIGKILL the child when the batch dies (kill -9 too): no orphan measures beside a resumed batch
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # not Linux: the timeout and the process group still bound the child
        if self.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 10))
        if self.address_space_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space_bytes, self.address_space_bytes))


def child_limits(provider: str, timeout_s: float, max_memory_gb: float | None) -> ChildLimits:
    cpu_seconds = int(timeout_s * (os.cpu_count() or 1) * 1.5) + 60
    memory = None if uses_gpu(provider) or not max_memory_gb else int(max_memory_gb * (1 << 30))
    return ChildLimits(cpu_seconds, memory)
