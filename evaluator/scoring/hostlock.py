"""One scoring per host: an OS-level lock that every measurement takes, by hand or from a cluster.

CPU energy (RAPL) is per package and shared by every process on the host, so two scorings at once
inflate each other's joules whatever GPUs they use. ``flock`` on one file in a machine-wide place
serialises them: a plain ``edl score``, a score-dir child and a Ray task all take it. The place is
``EDL_HOST_LOCK`` (hosts simulated on one machine set one each), else /run/lock, else /tmp.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evaluator.errors import MeterError
from evaluator.events import TICK_S, EventSink, Waiting, silent

LOCK_NAME = "edl-scoring.lock"
POLL_S = 0.5


def lock_path() -> Path:
    if configured := os.environ.get("EDL_HOST_LOCK"):
        return Path(configured)
    run_lock = Path("/run/lock")
    return (run_lock if run_lock.is_dir() and os.access(run_lock, os.W_OK) else Path("/tmp")) / LOCK_NAME


def holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def host_lock(sink: EventSink = silent, path: Path | None = None) -> Iterator[Path]:
    """Hold the host's scoring lock for the ``with`` block; while another scoring holds it, wait, emitting a
    ``Waiting`` (time left unknown, the holder and the lock's path as detail) now and every ``TICK_S``."""
    path = path or lock_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise MeterError(f"cannot open the host's scoring lock {path} ({exc.strerror or exc}); set EDL_HOST_LOCK "
                         "to a writable path shared by every edl on this host") from None
    try:
        told: float | None = None  # when the last Waiting was emitted
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if told is None or time.monotonic() - told >= TICK_S:
                    sink(Waiting("host_lock", None, f"{holder(path)}, {path}"))
                    told = time.monotonic()
                time.sleep(POLL_S)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"edl pid {os.getpid()}\n".encode())
        yield path
    finally:
        os.close(descriptor)  # closing releases the flock
