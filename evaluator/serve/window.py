"""The measurement window as the service sees it: the web server's CPU time read from /proc, split by scoring run,
and the lease keeper that renews a claim and holds the window flag open while a scoring runs."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evaluator.batch.outroot import read_or_none
from evaluator.events import Event, RunPlaced, SubmissionsDone
from evaluator.report.result import write_result
from evaluator.report.signing import finalise
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
    """Holds the window flag open (and renews the claim on ``submission_id``, if any) every third of the lease while
    a scoring runs; closes the flag when it ends."""

    def __init__(self, store: Store, worker_id: str, lease_s: float, submission_id: int | None = None) -> None:
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
                if self.submission_id is not None and not self.store.renew(self.submission_id, self.worker_id,
                                                                           self.lease_s):
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
    """The watched server's CPU seconds from the scoring's start (or the previous run's end) to each run's end, by
    (submission, run); ``observe`` is an event sink that takes the runs' ends from score-dir's events."""

    pid: int | None
    last: float | None = None
    by_run: dict[tuple[str, int], float | None] = dataclasses.field(default_factory=dict)
    placed: dict[str, int] = dataclasses.field(default_factory=dict)

    def start(self) -> None:
        self.last = process_cpu_s(self.pid)

    def lap(self, submission: str, run: int) -> None:
        now = process_cpu_s(self.pid)
        self.by_run[(submission, run)] = None if now is None or self.last is None else round(now - self.last, 3)
        self.last = now

    def observe(self, event: Event) -> None:
        if isinstance(event, RunPlaced):
            self.placed[event.submission] = event.run
        elif isinstance(event, SubmissionsDone):
            run = getattr(event, "run", None) or self.placed.get(event.submission)  # newer events name the run
            if run is not None:
                self.lap(event.submission, run)


def record_service_cpu(path: Path, submission: str, measured: list[int], windows: RunWindows,
                       key: Ed25519PrivateKey | None) -> None:
    """The server's CPU seconds of each run measured now in the run's fairness record of the result at ``path``,
    sealed and signed again. Runs measured earlier (by a worker that died) keep what they have: null, not known."""
    result = read_or_none(path)
    if result is None or not result.scored or not measured:
        return
    runs = [dataclasses.replace(run, fairness=dataclasses.replace(
        run.fairness, service_cpu_s=windows.by_run.get((submission, run.index))))
        if run.index in measured and run.fairness.service_cpu_s is None else run for run in result.runs]
    write_result(path, finalise(dataclasses.replace(result, runs=runs), key))
