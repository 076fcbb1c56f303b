"""The local backend: each scoring child in turn, on this machine, in its own process group."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from evaluator.batch.child import JOB_NAME, OUTCOME_NAME, ChildOutcome, Job, read_outcome, write_job
from evaluator.batch.limits import ChildLimits
from evaluator.errors import StoppedError
from evaluator.events import EventSink, RunPlaced, read_json_lines, silent
from evaluator.fileio import temp_pattern
from evaluator.report.records import utc_now
from evaluator.report.result import RUN_RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME

Done = Callable[[Job, ChildOutcome], None]
STOP_POLL_S = 0.5  # how soon a stop request kills the child
STOPPED = "the scoring was stopped on request; the run in progress is not recorded"


def _failure_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {"SIGKILL": " (killed: out of memory?)", "SIGXCPU": " (its CPU-time limit ran out)"}.get(name, "")
        return f"the scoring process died with {name}{hint}"
    tail = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"the scoring process exited with code {returncode}" + (f": {tail[-1]}" if tail else "")


def remove_run_files(folder: Path, index: int) -> None:
    """What the child measuring run ``index`` may have left in ``folder``, removed."""
    for name in (RUN_RESULT_NAME.format(index), SAMPLES_NAME.format(index), TIMELINE_NAME.format(index),
                 OUTCOME_NAME, JOB_NAME):
        (folder / name).unlink(missing_ok=True)
    for leftover in folder.glob(temp_pattern()):  # an atomic write cut short
        leftover.unlink(missing_ok=True)


def _kill(child: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.communicate()


def _forward(read_fd: int, sink: EventSink) -> None:
    """The child's events into ``sink`` as they come; the pipe is always drained, so a child never blocks on it."""
    telling = True
    with os.fdopen(read_fd, encoding="utf-8", errors="replace") as stream:
        for event in read_json_lines(stream):
            if telling:
                try:
                    sink(event)
                except Exception:  # noqa: BLE001 - a failing display must not stall the scoring child
                    telling = False


@contextmanager
def _event_pipe(sink: EventSink) -> Iterator[int]:
    """A pipe for the child's progress events (JSON lines, ``evaluator.events``), read into ``sink`` by a thread;
    yields the end the child writes. Every event is delivered before the ``with`` block is left."""
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(target=_forward, args=(read_fd, sink), name="edl-child-events", daemon=True)
    reader.start()
    try:
        yield write_fd
    finally:
        os.close(write_fd)  # the child's copy closes when it exits: the reader then sees the end
        reader.join(timeout=10)


def run_child(job: Job, timeout_s: float, limits: ChildLimits, sink: EventSink = silent,
              stop: threading.Event | None = None) -> ChildOutcome:
    """Run one job in its own process group, killed at ``timeout_s``; the files it leaves are its outcome.
    The child's progress events arrive in ``sink`` while it runs. When ``stop`` is set the child is killed at once
    and ``StoppedError`` raised (the batch then abandons the run, as on Ctrl-C)."""
    started_utc = utc_now()
    with _event_pipe(sink) as events_fd:
        outcome = _run_child(job, timeout_s, limits, events_fd, stop)
    return dataclasses.replace(outcome, host=outcome.host or socket.gethostname(), started_utc=started_utc)


def _wait(child: subprocess.Popen[str], timeout_s: float, stop: threading.Event | None) -> str:
    """The child's stderr once it exits; TimeoutExpired at ``timeout_s``; StoppedError within STOP_POLL_S of ``stop``
    being set (``communicate`` in slices: retrying it after its timeout loses no output)."""
    if stop is None:
        return child.communicate(timeout=timeout_s)[1]
    deadline = time.monotonic() + timeout_s
    while True:
        if stop.is_set() and child.poll() is None:  # a child that already exited left a whole run: keep it
            raise StoppedError(STOPPED)
        try:
            return child.communicate(timeout=max(0.0, min(STOP_POLL_S, deadline - time.monotonic())))[1]
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def _run_child(job: Job, timeout_s: float, limits: ChildLimits, events_fd: int,
               stop: threading.Event | None) -> ChildOutcome:
    started = time.monotonic()
    for stale in (job.plan.result_name, OUTCOME_NAME):
        (job.out_dir / stale).unlink(missing_ok=True)  # a stale result must never stand for this run
    job_path = write_job(job)
    child = subprocess.Popen(limits.command("evaluator.batch.child", str(job_path), str(events_fd)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env=os.environ | {"PYTHONUNBUFFERED": "1"}, pass_fds=(events_fd,))
    try:
        stderr = _wait(child, timeout_s, stop)
    except subprocess.TimeoutExpired:
        _kill(child)
        return ChildOutcome(f"timed out after {timeout_s:g} s (--timeout); the scoring process was killed", True,
                            time.monotonic() - started)
    except BaseException:
        _kill(child)  # Ctrl-C or a stop: its own session never saw it; it must not write on after the batch cleaned up
        raise
    finally:
        job_path.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    outcome = read_outcome(job.out_dir)
    (job.out_dir / OUTCOME_NAME).unlink(missing_ok=True)
    if outcome is None:
        return ChildOutcome(_failure_reason(child.returncode, stderr), False, elapsed)
    if outcome.ok and not (job.out_dir / job.plan.result_name).is_file():
        return ChildOutcome("the scoring process exited cleanly but wrote no result", False, elapsed)
    return ChildOutcome(outcome.failure, False, elapsed)


class LocalBackend:
    """One child at a time, in the order given: energy windows never overlap on this host."""

    def __init__(self, timeout_s: float, limits: ChildLimits, sink: EventSink = silent,
                 stop: threading.Event | None = None) -> None:
        self.timeout_s, self.limits, self.sink, self.stop = timeout_s, limits, sink, stop
        self.lost: list[str] = []  # this host does not die under its own children

    def run(self, jobs: Iterable[Job], done: Done) -> None:
        """Each job in turn: a ``RunPlaced``, then the child's own events as it scores, then ``done``."""
        for job in jobs:
            if self.stop is not None and self.stop.is_set():
                raise StoppedError(STOPPED)
            self.sink(RunPlaced(job.name, job.plan.first_run, socket.gethostname()))
            done(job, run_child(job, self.timeout_s, self.limits, self.sink, self.stop))

    def close(self) -> None:
        pass
