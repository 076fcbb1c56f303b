"""The scoring worker of ``edl serve``: takes the queue one submission at a time, scores it with ``score-dir``'s
machinery into the competition's results root, and records the outcome in the store exactly once.

Each claim is leased and the lease renewed while the scoring runs; a worker killed mid-scoring loses its lease and
the submission goes back to the queue once (``Store.claim``). The model is handed to ``score_directory`` in a
one-model folder (``work/<name>/<name>.onnx``, a hard link of the upload), so the isolated child, its limits and
timeout, the host lock, the thermal target, the audit with the organiser's secret, signing and repeats are the
batch's own, and ``edl leaderboard COMPETITION/results`` and ``edl verify`` read the results unchanged. The
measurement window flag is open only while a run's energy is metered (its idle baseline to the end of its measured
passes: evaluator.serve.window), and the web server's process-tree CPU time over those windows is written into each
run's fairness record (then the result is sealed and signed again).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evaluator.batch.outroot import Archive, read_or_none
from evaluator.config import ScoreConfig, comparable_settings
from evaluator.data.store import resolve
from evaluator.errors import EdlError, StoppedError, UsageError
from evaluator.events import (
    EventSink,
    PhaseFinished,
    PhaseStarted,
    silent,
)
from evaluator.report.batch_record import BatchItem
from evaluator.report.records import DataRecord
from evaluator.report.result import RESULT_NAME, Result
from evaluator.report.signing import load_private
from evaluator.scoring.records import data_record
from evaluator.serve.competition import hold_lock, open_store, refuse_incomparable_results
from evaluator.serve.recorder import ProgressRecorder, score_folder
from evaluator.serve.settings import SETTINGS_NAME, Competition, load_competition
from evaluator.serve.store import Fault, Store, StoreError, Submission, tail
from evaluator.serve.window import LeaseKeeper, RunWindows, WindowFlag, process_alive, record_service_cpu

PHASE = "scoring"
# A child's failure is the team's (its model crashed, hung, ran out of memory) unless it names our machine.
ORGANISER_MARKERS = ("sampler", "NVML", "RAPL", "power", "meter", "scoring lock", "EDL_HOST_LOCK", "test set",
                     "measurement is invalid", "No space left", "--exclusive")


def worker_id_of(pid: int) -> str:
    """A worker process's id in the store (edl serve names what its worker gave back by it)."""
    return f"{socket.gethostname()}:{pid}"


def settings_fingerprint(config: ScoreConfig, data: DataRecord) -> str:
    """What makes two results comparable: the comparable settings and the test set (the store's result key)."""
    document = {"settings": comparable_settings(config), "data": data.fingerprint}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def fault_of(reason: str) -> Fault:
    return "organiser" if any(marker in reason for marker in ORGANISER_MARKERS) else "team"


def team_reason(item: BatchItem, timeout_s: float) -> str:
    """The failure in words a team can act on."""
    reason = item.reason or "the scoring failed without a reason (see the log)"
    reason = reason.replace("(--timeout)", f"([batch] timeout_s in {SETTINGS_NAME})")
    if "timed out" in reason:
        return f"{reason}: one run may take at most {timeout_s:g} s; make the model faster, or ask the organiser"
    if fault_of(reason) == "organiser":
        return f"{reason}: the scoring machine failed, not your model; this does not use your quota"
    return reason


class SubmissionLog:
    """The worker's log of one submission (COMPETITION/logs/<id>.log); its tail is stored with the outcome."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.path.open("a") as handle:
            handle.write(f"{stamp} {text}\n")

    def tail(self) -> str:
        return tail(self.path.read_text()) if self.path.is_file() else ""


class Worker:
    """Scores the competition's queue, one submission at a time, on this host (or its Ray cluster)."""

    def __init__(self, competition: Competition, store: Store | None = None, worker_id: str | None = None,
                 watch_pid: int | None = None, sink: EventSink = silent, poll_s: float = 1.0,
                 backoff_s: float = 60.0) -> None:
        self.competition, self.store = competition, store or open_store(competition)
        self.worker_id = worker_id or worker_id_of(os.getpid())
        self.watch_pid, self.sink, self.poll_s, self.backoff_s = watch_pid, sink, poll_s, backoff_s
        self.settings = competition.settings
        self.stopping = threading.Event()
        if watch_pid is not None:
            self.store.set_server_pid(watch_pid)

    @functools.cached_property
    def data(self) -> DataRecord:
        return data_record(resolve(self.settings.score.data))

    def refuse_incomparable(self) -> None:
        """At start: settings not comparable with the results already measured would fail every submission."""
        refuse_incomparable_results(self.competition, self.data.fingerprint)

    def run(self) -> None:
        """Score until ``stopping`` is set, or the watched server is gone (a server killed with -9 leaves its worker
        behind: it finishes the scoring in hand, then stops, so a restarted server's worker is the only one)."""
        while not self.stopping.is_set() and (self.watch_pid is None or process_alive(self.watch_pid)):
            if self.run_once() is None:
                self.stopping.wait(self.poll_s)

    def run_once(self) -> Submission | None:
        """Claim and score the next queued submission; None when none waits."""
        submission = self.store.claim(self.worker_id, self.settings.lease_s)
        if submission is None:
            return None
        log = SubmissionLog(self.competition.logs / f"{submission.id}.log")
        log.line(f"claimed by {self.worker_id} (lease {self.settings.lease_s:g} s)")
        try:
            return self._score(submission, log)
        except StoppedError:
            log.line("cancelled by the organiser during its scoring: the run in progress was killed; nothing of it "
                     "is recorded (runs already whole stay staged in the results root)")
            return self.store.submission(submission.id)
        except KeyboardInterrupt:
            log.line("the worker was stopped: the submission waits again, first in line")
            with contextlib.suppress(StoreError):
                self.store.give_back(submission.id, self.worker_id)
            raise
        except EdlError as exc:
            log.line(f"error: {exc}")  # the organiser's words (they may name edl's flags) stay in the log
            failed = self._fail(submission, "the scoring machine failed, not your model; the organiser has been told "
                                "(the service's log names the cause); this does not use your quota", "organiser", log)
            self.stopping.wait(self.backoff_s)  # a broken machine would fail the whole queue at once
            return failed

    def _fail(self, submission: Submission, reason: str, fault: Fault, log: SubmissionLog) -> Submission:
        log.line(f"failed ({fault}'s side): {reason}")
        try:
            return self.store.fail(submission.id, self.worker_id, reason, fault, log.tail())
        except StoreError as exc:  # the lease was lost meanwhile: whoever holds it now records the outcome
            log.line(f"not recorded: {exc}")
            return self.store.submission(submission.id)

    def _score(self, submission: Submission, log: SubmissionLog) -> Submission:
        fingerprint = settings_fingerprint(self.settings.score, self.data)
        standing = self.store.result_for(submission.sha256, fingerprint)
        if standing is not None:  # another team's copy of a model scored under these settings: not measured twice
            log.line(f"the result of {standing} stands for this model: not measured again")
            return self._finish(submission, standing, fingerprint, log)
        self._archive_failure(submission, log)
        item, windows = self._measure(submission, log)
        if self.store.is_cancelled(submission.id):  # cancelled as its scoring ended, too late to stop it
            return self._withdraw(submission, item, log)
        hosts = ", ".join(place.host for place in item.places)
        because = f": {item.reason}" if item.reason else ""
        log.line(f"{item.outcome}: runs {item.runs} on {hosts or 'no host'}{because}")
        if item.outcome == "failed":
            reason = team_reason(item, self.settings.batch.timeout_s)
            return self._fail(submission, reason, fault_of(item.reason or ""), log)
        record_service_cpu(self.competition.results / submission.name / RESULT_NAME, submission.name, item.runs,
                           windows, self._key())
        return self._finish(submission, submission.name, fingerprint, log)

    def _withdraw(self, submission: Submission, item: BatchItem, log: SubmissionLog) -> Submission:
        """The result a cancelled scoring published moves to the archive: kept (evidence), never on the board."""
        folder = self.competition.results / submission.name
        published = read_or_none(folder / RESULT_NAME)
        if item.outcome == "scored" and published is not None and published.model.sha256 == submission.sha256:
            log.line(f"cancelled by the organiser as its scoring ended: its result moved to "
                     f"{Archive(self.competition.results).move(folder)} (kept, not ranked)")
        else:
            log.line("cancelled by the organiser as its scoring ended: nothing of it is recorded")
        return self.store.submission(submission.id)

    def _archive_failure(self, submission: Submission, log: SubmissionLog) -> None:
        """A failed result left by an earlier try moves to the archive: a claimed submission is measured, never
        failed again from a file (score-dir keeps a failure standing under the same settings)."""
        folder = self.competition.results / submission.name
        earlier = read_or_none(folder / RESULT_NAME)
        if earlier is not None and not earlier.scored:
            log.line(f"an earlier failure ({earlier.reason}) moved to {Archive(self.competition.results).move(folder)}")

    def _measure(self, submission: Submission, log: SubmissionLog) -> tuple[BatchItem, RunWindows]:
        """score_directory on the submission's one-model folder, under a renewed lease; the window flag follows the
        runs' metered windows (evaluator.serve.window)."""
        folder = self._place(submission)
        flag = WindowFlag(self.store, self.worker_id, self.settings.lease_s)
        windows = RunWindows(self.watch_pid, flag, whole_runs=self.settings.batch.backend == "ray")
        config = self.settings.score
        recorder = ProgressRecorder(self.store, submission.id, log.line, windows, self.sink)
        recorder(PhaseStarted(PHASE, total_passes=config.repeat * config.passes))
        started, stop = time.monotonic(), threading.Event()
        try:
            with LeaseKeeper(self.store, self.worker_id, self.settings.lease_s, submission.id, flag, stop) as keeper:
                summary = score_folder(folder, self.competition.results, config, self.settings.batch,
                                       self.competition.secrets(), recorder, stop)
        finally:
            windows.end()
            recorder.flush()
        recorder(PhaseFinished(PHASE, time.monotonic() - started))
        if keeper.lost:
            log.line("the lease was lost during the scoring: another worker records this submission")
        return next(item for item in summary.submissions if item.name == submission.name), windows

    def _place(self, submission: Submission) -> Path:
        """The upload in a folder of its own, under the name it is scored and ranked by; kept, so that the result's
        model path leads ``edl verify`` to it (a hard link: no second copy)."""
        folder = self.competition.work / submission.name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        target = folder / f"{submission.name}.onnx"
        try:
            os.link(submission.path, target)
        except OSError:
            shutil.copyfile(submission.path, target)
        return folder

    def _key(self) -> Ed25519PrivateKey | None:
        path = self.competition.secrets().signing_key
        return load_private(path) if path is not None else None

    def _finish(self, submission: Submission, folder: str, fingerprint: str, log: SubmissionLog) -> Submission:
        result: Result | None = read_or_none(self.competition.results / folder / RESULT_NAME)
        if result is None or result.model.sha256 != submission.sha256:
            return self._fail(submission, f"the result in {folder} is missing or is another model's; the organiser "
                              "has been told (this does not use your quota)", "organiser", log)
        if not result.scored:  # a failure that stood (score-dir skipped it)
            return self._fail(submission, result.reason, fault_of(result.reason), log)
        log.line(f"scored: result {folder}/{RESULT_NAME}")
        try:
            done, recorded = self.store.finish(submission.id, self.worker_id, folder, submission.sha256, fingerprint,
                                               log.tail())
        except StoreError as exc:
            log.line(f"not recorded: {exc}")
            return self.store.submission(submission.id)
        log.line("recorded" if recorded else "recorded: an earlier result of this model stands for it")
        return done


# --- the worker as its own process (edl serve starts it) -------------------------------------------------------


def start_worker_process(competition_root: Path, watch_pid: int | None = None,
                         log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m evaluator.serve.worker COMPETITION [--watch-pid PID]`` as a child of the caller (the web server:
    its pid is the one watched by default). Stop it with SIGTERM: the submission it scores waits again."""
    watch = os.getpid() if watch_pid is None else watch_pid
    output = (log_path or Path(competition_root) / "logs" / "worker.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "evaluator.serve.worker", str(competition_root),
                                 "--watch-pid", str(watch)], stdout=output, stderr=subprocess.STDOUT,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
    finally:
        output.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # score_directory cleans up its child and its partial runs, then the claim is given back


USAGE = "usage: python -m evaluator.serve.worker COMPETITION_DIR [--watch-pid PID] (edl serve starts it)"


def _arguments(argv: list[str]) -> tuple[Path, int | None]:
    """The competition folder and the pid to watch; UsageError naming the fix otherwise."""
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--watch-pid"):
        raise UsageError(USAGE)
    try:
        return Path(argv[0]), int(argv[2]) if len(argv) == 3 else None
    except ValueError:
        raise UsageError(f"--watch-pid {argv[2]!r}: give a process id; {USAGE}") from None


def main(argv: list[str]) -> int:
    try:
        root, watch_pid = _arguments(argv)
        competition = load_competition(root)
        lock = hold_lock(competition, "worker")  # noqa: F841 - held until this process ends
        worker = Worker(competition, watch_pid=watch_pid)
        worker.refuse_incomparable()
    except EdlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"worker {worker.worker_id} scoring {root}", flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:
        print(f"worker {worker.worker_id} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
