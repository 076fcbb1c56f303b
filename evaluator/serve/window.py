"""The measurement window as the service sees it: the window flag that follows the metered windows of each run, the
web server's CPU time (its whole process tree) read from /proc over those windows, and the lease keeper.

The flag is open only while energy is measured: from a run's idle baseline (``Waiting("idle_baseline")``; the
warm-up or the measured passes where there is none) until its measured passes end (``PhaseFinished("pass")``).
The check, data, session, cool-down and audit phases, and the time between runs, leave it closed, so an upload made
then is checked at once. The cool-down is left out on purpose: it waits for the GPU's temperature (up to a minute
per run), which the web server's CPU does not move, and holding checks through it would hold them most of a
scoring. A run that dies inside its window closes the flag with its end (``SubmissionsDone``) or the scoring's;
a worker that dies leaves a flag that lapses with its lease (``Store.window_open`` reads its expiry, and
``Store.claim`` clears a dead worker's flag with its lease). Where the runs' own events stay on their hosts (the
Ray backend), a run's window is the whole run, from ``RunPlaced`` to its ``SubmissionsDone``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evaluator.batch.outroot import read_or_none
from evaluator.events import Event, PhaseFinished, PhaseStarted, RunPlaced, SubmissionsDone, Waiting
from evaluator.report.result import write_result
from evaluator.report.signing import finalise
from evaluator.serve.store import Store

SCORING_CHILD = b"evaluator.batch.child"  # the scoring child's module: it and its sampler are the measurement
OPENING_PHASES = ("warmup", "pass")  # a run without an idle baseline opens its window at the first of these
CLOSING_PHASE = "pass"
CANCEL_CHECK_S = 1.0  # how often the worker reads whether the submission it scores was cancelled


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (field 3 on), None if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_of(fields: list[str]) -> float:
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])  # fields 14-17 of proc(5)
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds process ``pid`` and its waited-for children used so far (user + system), None if unreadable."""
    fields = _stat_fields(pid) if pid is not None else None
    return None if fields is None else _cpu_of(fields)


def _children() -> dict[int, list[int]]:
    """Every process's children, from the parent pid in each /proc/PID/stat (about 5 ms of CPU for 90 processes,
    read at a window's edges only; /proc/PID/task/*/children is not in every kernel)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _is_measurement(pid: int) -> bool:
    """The scoring child (its sampler runs under it): the measurement itself, not the service."""
    try:
        return SCORING_CHILD in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def tree_cpu_s(pid: int | None, worker: int | None = None) -> float | None:
    """CPU seconds of the process tree under ``pid`` (the web server, its check server and the checks it forks, any
    other descendant; each one's reaped children included), less the ``worker``'s subtree (default: this process,
    unless it is ``pid`` itself) and the scoring child's: those are the measurement. None if ``pid`` is unreadable.

    Read at a window's edges, the difference is what the service spent in it: a descendant that ends in between
    moves its time into its parent's reaped-children count, so nothing is lost or counted twice."""
    root = _stat_fields(pid) if pid is not None else None
    if pid is None or root is None:
        return None
    worker = os.getpid() if worker is None else worker
    children, total, stack = _children(), _cpu_of(root), list[int]()
    stack.extend(children.get(pid, []))
    while stack:
        child = stack.pop()
        if child == worker or _is_measurement(child) or (fields := _stat_fields(child)) is None:
            continue
        total += _cpu_of(fields)
        stack.extend(children.get(child, []))
    return total


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


class WindowFlag:
    """The store's window flag as one worker holds it: opened and closed by the runs' events, renewed by the lease
    keeper while open (for one lease at a time: a dead worker's flag lapses with its lease)."""

    def __init__(self, store: Store, worker_id: str, lease_s: float) -> None:
        self.store, self.worker_id, self.lease_s = store, worker_id, lease_s
        self.is_open = False
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if not self.is_open:
                self.store.set_window(self.worker_id, self.lease_s)
                self.is_open = True

    def close(self) -> None:
        with self._lock:
            if self.is_open:
                self.store.set_window(self.worker_id, None)
                self.is_open = False

    def renew(self, store: Store) -> None:
        """Called from the keeper's thread (``store``: its own connection)."""
        with self._lock:
            if self.is_open:
                store.set_window(self.worker_id, self.lease_s)


class LeaseKeeper:
    """Renews the claim on ``submission_id`` (if any) and the open window ``flag`` (if any) every third of the lease
    while a scoring runs; closes the flag when the scoring ends, however it ends. With ``stop``: sets it within
    ``CANCEL_CHECK_S`` of the organiser cancelling the submission (the scoring then stops)."""

    def __init__(self, store: Store, worker_id: str, lease_s: float, submission_id: int | None = None,
                 flag: WindowFlag | None = None, stop: threading.Event | None = None) -> None:
        self.store, self.submission_id, self.worker_id, self.lease_s = store, submission_id, worker_id, lease_s
        self.flag, self.stop = flag, stop
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{submission_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        renew_s = self.lease_s / 3
        tick_s = min(renew_s, CANCEL_CHECK_S) if self.stop is not None else renew_s
        renew_at = time.monotonic() + renew_s
        try:
            while not self._stop.wait(tick_s):
                if self.stop is not None and self.submission_id is not None and self._cancelled():
                    self.stop.set()
                if time.monotonic() < renew_at:
                    continue
                renew_at += renew_s
                if self.submission_id is not None and not self.store.renew(self.submission_id, self.worker_id,
                                                                           self.lease_s):
                    self.lost = True
                if self.flag is not None:
                    self.flag.renew(self.store)
        finally:
            self.store.close()

    def _cancelled(self) -> bool:
        """A busy or failing database must not end this thread: the lease and the window would then lapse."""
        assert self.submission_id is not None
        try:
            return self.store.is_cancelled(self.submission_id)
        except sqlite3.Error:
            return False

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.flag is not None:
            self.flag.close()


@dataclasses.dataclass
class RunWindows:
    """The runs' metered windows, from score-dir's and the scoring child's events (``observe`` is an event sink):
    opens and closes the window ``flag`` with them, and sums the watched server's process-tree CPU seconds over each
    run's windows, by (submission, run).

    ``whole_runs``: the runs' own events stay on their hosts (Ray), so a run's window is the whole run."""

    pid: int | None
    flag: WindowFlag | None = None
    whole_runs: bool = False
    by_run: dict[tuple[str, int], float | None] = dataclasses.field(default_factory=dict)
    current: tuple[str, int] = ("", 0)
    opened_at: float | None = None
    is_open: bool = False
    spent: dict[tuple[str, int], float | None] = dataclasses.field(default_factory=dict)
    open_runs: set[tuple[str, int]] = dataclasses.field(default_factory=set)

    def open(self) -> None:
        if self.is_open:
            return
        if self.flag is not None:
            self.flag.open()
        self.is_open, self.opened_at = True, tree_cpu_s(self.pid)

    def close(self) -> None:
        """The window ends: its CPU seconds added to the current run's."""
        if not self.is_open:
            return
        now = tree_cpu_s(self.pid)
        if self.flag is not None:
            self.flag.close()
        self.is_open = False
        before = self.spent.get(self.current, 0.0)
        self.spent[self.current] = None if now is None or self.opened_at is None or before is None else \
            before + now - self.opened_at

    def observe(self, event: Event) -> None:
        if self.whole_runs:
            self._observe_whole(event)
        elif isinstance(event, RunPlaced):
            self.close()  # a run before it that died inside its window
            self.current = (event.submission, event.run)
            self.spent[self.current] = 0.0
        elif (isinstance(event, Waiting) and event.waiting_for == "idle_baseline") or (
                isinstance(event, PhaseStarted) and event.phase in OPENING_PHASES):
            self.open()
        elif isinstance(event, PhaseFinished) and event.phase == CLOSING_PHASE:
            self.close()
        elif isinstance(event, SubmissionsDone):
            self.close()
            self._lap((event.submission, event.run or self.current[1]), self.current)

    def _observe_whole(self, event: Event) -> None:
        """Ray: each run in flight is its window (several may fly at once: each gets the CPU while it flies)."""
        if isinstance(event, (RunPlaced, SubmissionsDone)):
            self.close()
            self._share()
        if isinstance(event, RunPlaced):
            self.open_runs.add((event.submission, event.run))
            self.spent.setdefault((event.submission, event.run), 0.0)
        elif isinstance(event, SubmissionsDone):
            run = (event.submission, event.run or 0)
            self.open_runs.discard(run)
            self._lap(run, run)
        if self.open_runs and isinstance(event, (RunPlaced, SubmissionsDone)):
            self.open()

    def _share(self) -> None:
        """The CPU seconds of the window just closed, to each run that flew in it."""
        spent = self.spent.pop(("", 0), 0.0)
        for run in self.open_runs:
            before = self.spent.get(run, 0.0)
            self.spent[run] = None if spent is None or before is None else before + spent

    def _lap(self, run: tuple[str, int], spent_as: tuple[str, int]) -> None:
        spent = self.spent.pop(spent_as, None)
        self.by_run[run] = None if spent is None else round(spent, 3)

    def end(self) -> None:
        """The scoring ended (or died): the flag closed."""
        self.close()
        if self.flag is not None:
            self.flag.close()


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
