"""The scoring child: ``python -m evaluator.batch.child JOB.json [EVENTS_FD]`` scores one submission for score-dir.

The job (model, name, result folder, the whole ``ScoreConfig``) arrives as a JSON file, not as
command-line options to parse again; the outcome leaves as a JSON file beside the result, so the
parent never has to read the child's stderr to learn why it failed. The scoring's progress events
leave as JSON lines on the inherited descriptor ``EVENTS_FD``, for the parent's sink.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.config import ScoreConfig, Secrets
from evaluator.errors import EdlError, SubmissionError
from evaluator.events import EventSink, coalesced, json_lines, silent
from evaluator.fileio import write_owner_only
from evaluator.power.gpu import number_cuda_devices_as_nvml
from evaluator.report.records import DataRecord, write_document
from evaluator.scoring.pipeline import Plan, score
from evaluator.typedjson import from_json, to_json

OUTCOME_NAME = ".outcome.json"
JOB_NAME = ".job.json"


@dataclass(frozen=True)
class Job:
    """One scoring for a child process."""

    model: Path
    name: str
    out_dir: Path
    config: ScoreConfig
    data: DataRecord  # the test set the parent resolved: the child refuses other data, and records this one
    plan: Plan = field(default_factory=Plan)  # which run(s) this child measures, and where it leaves them
    secrets: Secrets = field(default_factory=Secrets)  # never recorded; the job file is owner-only
    gpu_kind: str | None = None  # on a cluster: run it on a host of this GPU kind


@dataclass(frozen=True)
class ChildOutcome:
    """How one scoring child ended, the one outcome of the local and Ray backends and of the reference's runs.

    The child writes ``failure`` (``OUTCOME_NAME``); whoever ran it adds whether it timed out, how long it took and
    where. ``failure`` has no default: a file without it is unreadable, never a success.
    """

    failure: str | None  # None: it left its result; else why not, in one line
    timed_out: bool = False
    elapsed_s: float = 0.0
    host: str = ""
    started_utc: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


def write_job(job: Job) -> Path:
    """The job file, created readable by its owner only: it carries the organiser's secrets."""
    path = job.out_dir / JOB_NAME
    path.unlink(missing_ok=True)
    write_owner_only(path, json.dumps(to_json(job)).encode())
    return path


def read_outcome(out_dir: Path) -> ChildOutcome | None:
    """The outcome the child left in ``out_dir``; None where there is none or it cannot be read (a foreign shape)."""
    try:
        return from_json(ChildOutcome, json.loads((out_dir / OUTCOME_NAME).read_text()))
    except (OSError, ValueError, EdlError):
        return None


def write_outcome(out_dir: Path, outcome: ChildOutcome) -> None:
    write_document(out_dir / OUTCOME_NAME, outcome)


def run_job(job: Job, sink: EventSink = silent) -> ChildOutcome:
    """Score the job's submission, its progress events into ``sink``; an error of ours becomes the outcome's reason."""
    try:
        score(job.model, job.config, job.out_dir, sink, name=job.name, resolved_data=job.data,
              secrets=job.secrets, plan=job.plan)
    except SubmissionError as exc:
        return ChildOutcome("; ".join(exc.problems))
    except EdlError as exc:
        return ChildOutcome(str(exc))
    return ChildOutcome(None)


def main(argv: list[str]) -> int:
    number_cuda_devices_as_nvml()
    job_path = Path(argv[0])
    job = from_json(Job, json.loads(job_path.read_text()), "job")
    sink = coalesced(json_lines(os.fdopen(int(argv[1]), "w", encoding="utf-8"))) if len(argv) > 1 else silent
    outcome = run_job(job, sink)
    write_outcome(job.out_dir, outcome)
    return 0 if outcome.ok else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
