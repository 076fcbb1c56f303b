"""The measurement window as the service sees it: the web server's CPU time read from /proc, split by scoring run,
and the lease keeper that renews a claim and holds the window flag open while a scoring runs."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from evaluator.serve.store import Store


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds process ``pid`` and its waited-for children used so far (user + system), None if unreadable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])  # fields 14-17 of proc(5)
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class LeaseKeeper:
    """Renews the claim (and the window flag) every third of the lease while the scoring runs."""

    def __init__(self, store: Store, submission_id: int, worker_id: str, lease_s: float) -> None:
        self.store, self.submission_id, self.worker_id, self.lease_s = store, submission_id, worker_id, lease_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{submission_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self.store.set_window(self.worker_id, self.lease_s)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.lease_s / 3):
                if not self.store.renew(self.submission_id, self.worker_id, self.lease_s):
                    self.lost = True
                self.store.set_window(self.worker_id, self.lease_s)
        finally:
            self.store.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.store.set_window(self.worker_id, None)


@dataclasses.dataclass
class RunWindows:
    """The watched server's CPU seconds between the scoring's start and each run's end, by run index."""

    pid: int | None
    last: float | None = None
    by_run: dict[int, float | None] = dataclasses.field(default_factory=dict)

    def start(self) -> None:
        self.last = process_cpu_s(self.pid)

    def lap(self, run: int) -> None:
        now = process_cpu_s(self.pid)
        self.by_run[run] = None if now is None or self.last is None else round(now - self.last, 3)
        self.last = now
