"""``edl score-dir``: score every submission in a folder, one child process each, one after another.

A child per submission means a crash, hang or out-of-memory costs only that submission: the
failure is recorded as its result and the batch goes on. Energy windows never overlap because the
children run in turn. Results are written atomically, so an interrupted batch resumes cleanly:
a submission already scored with the same model, data and comparable settings is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator.batch.child import OUTCOME_NAME, Job, read_outcome, write_job
from evaluator.batch.limits import ChildLimits, child_limits
from evaluator.config import BatchConfig, ScoreConfig, Secrets, comparable_settings
from evaluator.data.store import resolve
from evaluator.errors import EdlError, ResultError
from evaluator.fileio import sha256_file
from evaluator.report.integrity import seal
from evaluator.report.reader import read_result
from evaluator.report.result import (
    RESULT_NAME,
    BatchItem,
    BatchSummary,
    ChildLimitsRecord,
    DataRecord,
    Result,
    utc_now,
    write_document,
    write_result,
)
from evaluator.scoring.hostinfo import versions
from evaluator.scoring.records import data_record, failed_result
from evaluator.scoring.phases import prepare_out_dir

BATCH_NAME = "batch.json"
ProgressHook = Callable[[str, int, int], None]
"""Called with (submission name, index done, total)."""


@dataclass(frozen=True)
class Submission:
    name: str
    model: Path | None  # None when the entry is not a usable submission
    problem: str = ""


def discover(directory: Path) -> list[Submission]:
    """Each ``*.onnx`` file in ``directory``, and each sub-folder holding exactly one ``.onnx``."""
    if not directory.is_dir():
        raise EdlError(f"{directory}: not a folder of submissions")
    found: list[Submission] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".onnx":
            found.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            models = sorted(entry.glob("*.onnx"))
            if len(models) == 1:
                found.append(Submission(entry.name, models[0]))
            else:
                found.append(Submission(entry.name, None, f"the folder holds {len(models)} .onnx files; it needs one"))
    names = [s.name for s in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise EdlError(f"{directory}: several submissions are named {sorted(duplicates)} (a file and a folder?)")
    return found


def _previous(path: Path) -> Result | None:
    try:
        return read_result(path)
    except ResultError:
        return None  # absent, unreadable or from another schema: score again


def still_stands(previous: Result | None, model: Path, fingerprint: str, config: ScoreConfig,
                 timeout_s: float) -> bool:
    """A result scored from the same model, data and comparable settings stands; a time-out under a
    shorter --timeout than now deserves another try."""
    if previous is None or previous.data is None:
        return False
    if not previous.scored and (previous.timeout_s or timeout_s) < timeout_s:
        return False
    return (previous.model.sha256 == sha256_file(model) and previous.data.fingerprint == fingerprint
            and comparable_settings(previous.config) == comparable_settings(config))


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


def run_child(job: Job, timeout_s: float, limits: ChildLimits) -> tuple[str | None, bool]:
    """Run one job in its own process group; the failure reason (None: scored) and whether it timed out."""
    for stale in (RESULT_NAME, OUTCOME_NAME):
        (job.out_dir / stale).unlink(missing_ok=True)  # a stale result must never stand for this run
    job_path = write_job(job)
    child = subprocess.Popen([sys.executable, "-m", "evaluator.batch.child", str(job_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env=os.environ | {"PYTHONUNBUFFERED": "1"}, preexec_fn=limits.apply)
    try:
        _, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return f"timed out after {timeout_s:g} s (--timeout); the scoring process was killed", True
    finally:
        job_path.unlink(missing_ok=True)
    outcome = read_outcome(job.out_dir)
    (job.out_dir / OUTCOME_NAME).unlink(missing_ok=True)
    if outcome is None:
        return _failure_reason(child.returncode, stderr), False
    if outcome.ok and not (job.out_dir / RESULT_NAME).is_file():
        return "the scoring process exited cleanly but wrote no result", False
    return (None if outcome.ok else outcome.reason), False


class _Batch:
    """One score-dir run: the submissions in turn, their outcomes, the summary."""

    def __init__(self, out_root: Path, config: ScoreConfig, batch: BatchConfig, data: DataRecord,
                 secrets: Secrets) -> None:
        self.out_root, self.config, self.batch, self.data, self.secrets = out_root, config, batch, data, secrets
        self.limits = child_limits(config.runtime.provider, batch.timeout_s, batch.max_memory_gb)
        self.versions = versions()
        self.items: list[BatchItem] = []

    def record_failure(self, submission: Submission, reason: str, elapsed_s: float = 0.0,
                       timeout_s: float | None = None) -> None:
        out_dir = self.out_root / submission.name
        out_dir.mkdir(parents=True, exist_ok=True)
        result = failed_result(submission.name, submission.model, reason, self.config, self.data, self.versions,
                               elapsed_s, timeout_s)
        write_result(out_dir / RESULT_NAME, seal(result))
        self.items.append(BatchItem(submission.name, "failed", reason=reason, seconds=elapsed_s))

    def score(self, submission: Submission) -> None:
        if submission.model is None:
            self.record_failure(submission, submission.problem)
            return
        out_dir = self.out_root / submission.name
        previous = None if self.batch.force else _previous(out_dir / RESULT_NAME)
        if still_stands(previous, submission.model, self.data.fingerprint, self.config, self.batch.timeout_s):
            assert previous is not None
            self.items.append(BatchItem(submission.name, "skipped", status=previous.status))
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        job = Job(submission.model.resolve(), submission.name, out_dir, self.config, self.data.fingerprint,
                  self.secrets)
        reason, timed_out = run_child(job, self.batch.timeout_s, self.limits)
        elapsed = time.monotonic() - started
        if reason is not None:
            self.record_failure(submission, reason, elapsed, self.batch.timeout_s if timed_out else None)
        else:
            self.items.append(BatchItem(submission.name, "scored", seconds=elapsed))

    def summary(self, directory: Path, started_utc: str, wall_s: float) -> BatchSummary:
        counts = {kind: sum(1 for item in self.items if item.outcome == kind) for kind in ("scored", "failed",
                                                                                            "skipped")}
        return BatchSummary(
            directory=str(directory), data=self.data, config=self.config, batch=self.batch,
            limits=ChildLimitsRecord(self.batch.timeout_s, self.limits.cpu_seconds, self.limits.address_space_bytes),
            counts=counts, submissions=self.items, started_utc=started_utc, wall_s=wall_s)


def score_directory(directory: Path, out_root: Path, config: ScoreConfig, batch: BatchConfig | None = None,
                    progress: ProgressHook | None = None, secrets: Secrets | None = None) -> BatchSummary:
    """Score every submission in ``directory``; returns the batch summary (also written as batch.json)."""
    batch = batch or BatchConfig()
    started_utc, started = utc_now(), time.monotonic()
    submissions = discover(directory)
    prepare_out_dir(out_root)
    runner = _Batch(out_root, config, batch, data_record(resolve(config.data)), secrets or Secrets())
    for index, submission in enumerate(submissions):
        if progress:
            progress(submission.name, index, len(submissions))
        runner.score(submission)
    if progress:
        progress("", len(submissions), len(submissions))
    summary = runner.summary(directory, started_utc, time.monotonic() - started)
    write_document(out_root / BATCH_NAME, summary)
    return summary

