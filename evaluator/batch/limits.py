"""Operating-system limits on each scoring child: a backstop behind --timeout and the checks.

The child applies them to itself: ``python -m evaluator.batch.limits LIMITS_JSON MODULE [ARGS...]``
applies the limits first, then runs MODULE as ``__main__``. Not ``preexec_fn``: that runs Python in the
forked child before exec, where a Ctrl-C sent to the batch's process group lands in the interpreter's
after-fork hooks and prints a traceback (CI caught it once), and Python documents it unsafe beside
threads (the batch reads the child's events on one, the service serves on several).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import runpy
import signal
import sys
from dataclasses import dataclass

from evaluator.runtime.providers import uses_gpu
from evaluator.typedjson import from_json, to_json

PR_SET_PDEATHSIG = 1
PARENT_GONE_EXIT = 3  # the parent died before this child could be tied to it: nothing to run for


@dataclass(frozen=True)
class ChildLimits:
    cpu_seconds: int | None  # RLIMIT_CPU: CPU time over all threads
    address_space_bytes: int | None  # RLIMIT_AS: only for CPU runs (CUDA maps huge virtual ranges)

    def apply(self, parent_pid: int | None = None) -> None:
        """In the child, before it reads anything untrusted. With ``parent_pid``: exit at once if that parent is
        already gone (it died between starting this child and this call, so the kill-with-parent came too late)."""
        try:  # SIGKILL the child when its parent dies (kill -9 too): no orphan measures beside a resumed batch
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # not Linux: the timeout and the process group still bound the child
        if parent_pid is not None and os.getppid() != parent_pid:
            os._exit(PARENT_GONE_EXIT)
        if self.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 10))
        if self.address_space_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space_bytes, self.address_space_bytes))

    def command(self, module: str, *args: str) -> list[str]:
        """The command line that runs ``python -m module args`` under these limits, tied to this process."""
        launch = json.dumps({"limits": to_json(self), "parent_pid": os.getpid()})
        return [sys.executable, "-m", __name__, launch, module, *args]


def child_limits(provider: str, timeout_s: float, max_memory_gb: float | None) -> ChildLimits:
    cpu_seconds = int(timeout_s * (os.cpu_count() or 1) * 1.5) + 60
    memory = None if uses_gpu(provider) or not max_memory_gb else int(max_memory_gb * (1 << 30))
    return ChildLimits(cpu_seconds, memory)


def main(argv: list[str]) -> None:
    """Apply the limits of ``argv[0]``, then run the module ``argv[1]`` with the rest as its arguments."""
    launch = json.loads(argv[0])
    from_json(ChildLimits, launch["limits"], "limits").apply(int(launch["parent_pid"]))
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
