"""``edl score-dir``: score every submission in a folder, each run in its own child process, round robin.

A child per run means a crash, hang or out-of-memory costs only that submission: the failure is
recorded as its result and the batch goes on. Repeats are interleaved across submissions (A B C,
A B C, ...) so that slow drift of the machine hits every submission alike, and every run cools the
GPU to the batch's one target temperature first. An optional reference submission is scored
before the first scoring, every ``--reference-every`` scorings and after the last: its drift is
recorded. Results are written atomically and a batch resumes: a result (or a single run) already
measured with the same model, data and comparable settings stands. Nothing measured is ever lost
(``evaluator.batch.outroot``): runs are staged in ``_partial/``, a whole result appears in one rename,
a replaced result is archived, a failed re-run is recorded beside the scored result that stands, and a
batch under settings not comparable with those already in ``--out`` does not start.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from evaluator.batch.child import ChildOutcome, Job
from evaluator.batch.discover import FoundSubmission, discover
from evaluator.batch.limits import child_limits
from evaluator.batch.local import STOPPED, Done, LocalBackend, remove_run_files
from evaluator.batch.outroot import (
    RUN_RESULTS,
    Archive,
    archive_batch_record,
    archive_everything,
    new_failure_path,
    publish,
    read_or_none,
    recover,
    refuse_incomparable,
    remove_if_empty,
    stage_of,
)
from evaluator.batch.ray_backend import RayBackend
from evaluator.batch.reference import REFERENCE_NAME, ReferenceRuns
from evaluator.batch.target_temp import batch_target
from evaluator.config import BatchConfig, ScoreConfig, Secrets, comparable_settings
from evaluator.data.dataset import Dataset
from evaluator.data.store import resolve
from evaluator.errors import EdlError, StoppedError, UsageError
from evaluator.events import EventSink, SubmissionsDone, silent
from evaluator.fileio import prepare_out_dir, sha256_file
from evaluator.report.batch_record import (
    BATCH_NAME,
    BatchItem,
    BatchSummary,
    ChildLimitsRecord,
    IgnoredEntry,
    RunPlace,
    ThermalRecord,
)
from evaluator.report.integrity import seal_holds
from evaluator.report.records import DataRecord, utc_now, write_document
from evaluator.report.result import RESULT_NAME, Result, write_result
from evaluator.report.signing import finalise, load_private
from evaluator.scoring.hostinfo import versions
from evaluator.scoring.pipeline import Plan, combine, run_name
from evaluator.scoring.records import data_record, failed_result, path_from


def still_stands(previous: Result | None, model_sha256: Callable[[], str], fingerprint: str, config: ScoreConfig,
                 timeout_s: float) -> bool:
    """A result scored from the same model, data and comparable settings, its seal intact, stands; a time-out under a
    shorter --timeout than now deserves another try. The model is hashed last: it is the costly check."""
    if previous is None or previous.data is None or not seal_holds(previous):
        return False  # an edited result is measured again; publishing the new one archives the edited file
    if not previous.scored and (previous.timeout_s or timeout_s) < timeout_s:
        return False
    return (previous.data.fingerprint == fingerprint
            and comparable_settings(previous.config) == comparable_settings(config)
            and previous.model.sha256 == model_sha256())


REFERENCE_RUN = -1
"""``run_order``'s position for a reference run (its index is then the scorings done before it)."""


def run_order(pending: Sequence[Sequence[int]], reference_every: int | None,
              failed: Callable[[int], bool] = lambda position: False) -> Iterator[tuple[int, int]]:
    """(submission's position, run index) in round robin over the pending runs (A B C, A B C, ...), so that slow
    drift hits every submission alike; with ``reference_every``, (REFERENCE_RUN, scorings done) before the first
    scoring, after every ``reference_every`` and after the last. ``failed`` is asked before each run (lazily: a
    submission that failed meanwhile gets no more)."""
    rounds = max((len(runs) for runs in pending), default=0)
    scorings = 0
    if reference_every is not None and rounds:
        yield REFERENCE_RUN, scorings
    for round_index in range(rounds):
        for position, runs in enumerate(pending):
            if round_index < len(runs) and not failed(position):
                yield position, runs[round_index]
                scorings += 1
                if reference_every is not None and scorings % reference_every == 0:
                    yield REFERENCE_RUN, scorings
    if reference_every is not None and rounds and scorings % reference_every:
        yield REFERENCE_RUN, scorings


@dataclass
class BatchEntry:
    """One submission's part in the batch: what stands already, the runs still to measure, how it went."""

    submission: FoundSubmission
    final: Path  # where its whole result lives
    out_dir: Path  # where its runs are measured: the stage under _partial/
    gpu_kind: str | None = None
    kept: list[Result] = field(default_factory=list)
    complete: bool = False  # kept is the standing result.json itself (not runs left by an interrupted batch)
    pending: list[int] = field(default_factory=list)
    measured: list[int] = field(default_factory=list)
    places: list[RunPlace] = field(default_factory=list)
    failure: tuple[str, float | None] | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.final.name


class _Batch:
    """One score-dir run: what to measure, the children's outcomes, the results and the summary."""

    def __init__(self, out_root: Path, config: ScoreConfig, batch: BatchConfig, data: DataRecord,
                 secrets: Secrets) -> None:
        self.out_root, self.config, self.batch, self.data = out_root, config, batch, data
        self.key = load_private(secrets.signing_key) if secrets.signing_key is not None else None
        self.secrets = dataclasses.replace(secrets, signing_key=None)  # the batch signs; its children need not
        self.limits = child_limits(config.runtime.provider, batch.timeout_s, batch.max_memory_gb)
        self.versions = versions()
        self.entries: list[BatchEntry] = []
        self.archive = Archive(out_root)
        self.in_flight: list[Job] = []  # yielded to the backend, not yet done: what an interruption cleans up
        self.thermal = ThermalRecord(None, "not fixed yet", config.meter.temp_band_c)

    def plan(self, submission: FoundSubmission, gpu_kind: str | None = None, kind_in_name: bool = False) -> BatchEntry:
        """What stands for ``submission`` and which runs remain: all, the missing ones, or a rematch's more."""
        folder = f"{submission.name}@{gpu_kind}" if kind_in_name else submission.name
        entry = BatchEntry(submission, self.out_root / folder, stage_of(self.out_root, folder), gpu_kind)
        if submission.model is None:
            return entry
        model_sha256 = functools.cache(functools.partial(sha256_file, submission.model))  # hashed once, if at all
        standing = read_or_none(entry.final / RESULT_NAME)
        candidates = [read_or_none(path) for path in sorted(entry.out_dir.glob(RUN_RESULTS))]
        staged = [part for part in candidates if part is not None and self._stands(part, model_sha256)]
        if self._stands(standing, model_sha256):
            assert standing is not None
            entry.kept, entry.complete = [standing], True
            if submission.name in self.batch.rematch and standing.scored:
                last = max(run.index for run in standing.runs)
                wanted = range(last + 1, last + 1 + self.config.repeat)
                extra = [part for part in staged if all(run.index in wanted for run in part.runs)]
                done = {run.index for part in extra for run in part.runs}
                entry.kept += extra  # a rematch interrupted earlier keeps the extra runs it measured
                entry.pending = [index for index in wanted if index not in done]
            return entry
        done = {run.index for part in staged for run in part.runs}
        entry.kept = staged if 1 in done else []  # run 1 carries the audit: without it, start again
        entry.pending = [i for i in range(1, self.config.repeat + 1) if i not in done or not entry.kept]
        return entry

    def _stands(self, result: Result | None, model_sha256: Callable[[], str]) -> bool:
        return still_stands(result, model_sha256, self.data.fingerprint, self.config, self.batch.timeout_s)

    def jobs(self, references: ReferenceRuns | None) -> Iterator[Job]:
        """The runs in ``run_order``; a submission that fails gets no more runs."""
        every = self.batch.reference_every if references is not None else None
        pending = [entry.pending for entry in self.entries]
        for who, index in run_order(pending, every, lambda position: self.entries[position].failure is not None):
            if who == REFERENCE_RUN:
                assert references is not None
                yield self._tracked(references.job(index))
            else:
                yield self._tracked(self._job(self.entries[who], index))

    def _tracked(self, job: Job) -> Job:
        self.in_flight.append(job)
        return job

    def abandon(self) -> None:
        """Interrupted: the runs in flight leave nothing behind (their processes are gone); runs done stay staged."""
        for job in self.in_flight:
            remove_run_files(job.out_dir, job.plan.first_run)
        for entry in self.entries:
            for folder in (entry.out_dir, entry.out_dir.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

    def _job(self, entry: BatchEntry, index: int) -> Job:
        assert entry.submission.model is not None
        entry.out_dir.mkdir(parents=True, exist_ok=True)
        plan = Plan(first_run=index, runs=1, audit=index == 1, target_temp_c=self.thermal.target_c,
                    result_name=run_name(index))
        return Job(entry.submission.model.resolve(), entry.submission.name, entry.out_dir, self.config,
                   self.data, plan, self.secrets, entry.gpu_kind)

    def done(self, job: Job, outcome: ChildOutcome) -> None:
        entry = next(e for e in self.entries if e.out_dir == job.out_dir)
        self.in_flight.remove(job)
        entry.seconds += outcome.elapsed_s
        entry.places.append(RunPlace(job.plan.first_run, outcome.host, outcome.started_utc, outcome.elapsed_s,
                                     outcome.failure or ""))
        if outcome.failure is not None:
            entry.failure = (outcome.failure, self.batch.timeout_s if outcome.timed_out else None)
        else:
            entry.measured.append(job.plan.first_run)

    def finish(self, entry: BatchEntry) -> BatchItem:
        """The submission's result from what stood and what was measured, published; or its failure, recorded."""
        name, model = entry.name, entry.submission.model
        item = BatchItem(name, "scored", seconds=entry.seconds, runs=entry.measured, places=entry.places,
                         gpu_kind=entry.gpu_kind)
        if model is None or entry.failure is not None:
            reason, timeout_s = entry.failure or (entry.submission.problem, None)
            return self._failed(entry, item, reason, timeout_s)
        if entry.complete and not entry.measured and len(entry.kept) == 1:
            return dataclasses.replace(item, outcome="skipped", status=entry.kept[0].status, seconds=None)
        parts = entry.kept + [result for index in entry.measured
                              if (result := read_or_none(entry.out_dir / run_name(index))) is not None]
        if len(parts) < len(entry.kept) + len(entry.measured):
            reason = "a run's result could not be read back (edl changed during the batch?); score it again"
            return self._failed(entry, item, reason, None)
        combined = combine(parts)  # recorded as the driver sees it: its config, the model seen from its folder
        result = dataclasses.replace(combined, config=self.config, model=dataclasses.replace(
            combined.model, path=path_from(entry.final, model)))
        entry.out_dir.mkdir(parents=True, exist_ok=True)
        write_result(entry.out_dir / RESULT_NAME, finalise(result, self.key))
        return dataclasses.replace(item, archived=publish(entry.out_dir, entry.final, self.archive))

    def _failed(self, entry: BatchEntry, item: BatchItem, reason: str, timeout_s: float | None) -> BatchItem:
        """A failure replaces no scored result: it is then recorded beside it, in failures/<utc>.json."""
        failure = finalise(failed_result(entry.submission.name, entry.submission.model, reason, self.config,
                                         self.data, self.versions, entry.final, entry.seconds, timeout_s), self.key)
        if entry.out_dir.is_dir():
            self.archive.move(entry.out_dir)  # the runs it did measure are kept, out of the resume's way
            remove_if_empty(entry.out_dir.parent)
        standing = read_or_none(entry.final / RESULT_NAME)
        item = dataclasses.replace(item, outcome="failed", reason=reason)
        if standing is not None and standing.scored:
            path = new_failure_path(entry.final)
            write_result(path, failure)
            return dataclasses.replace(item, failure_file=str(path),
                                       reason=f"{reason} (the earlier scored result stands; this failure is in {path})")
        entry.final.mkdir(parents=True, exist_ok=True)
        write_result(entry.final / RESULT_NAME, failure)
        return item

    def summary(self, directory: Path, items: list[BatchItem], started_utc: str, wall_s: float,
                references: ReferenceRuns | None) -> BatchSummary:
        counts = {kind: sum(1 for item in items if item.outcome == kind) for kind in ("scored", "failed", "skipped")}
        hosts = sorted({place.host for item in items for place in item.places if place.host})
        return BatchSummary(
            directory=str(directory), data=self.data, config=self.config, batch=self.batch,
            limits=ChildLimitsRecord(self.batch.timeout_s, self.limits.cpu_seconds, self.limits.address_space_bytes),
            counts=counts, submissions=items, started_utc=started_utc, wall_s=wall_s, thermal=self.thermal,
            reference=references.record() if references is not None else None, backend=self.batch.backend,
            hosts=hosts, archived=self.archive.moved)


class Backend(Protocol):
    lost: list[str]

    def run(self, jobs: Iterable[Job], done: Done) -> None: ...

    def close(self) -> None: ...


def _backend(state: _Batch, dataset: Dataset, sink: EventSink,
             stop: threading.Event | None) -> tuple[Backend, list[str]]:
    """The backend the batch asked for, and the GPU kinds of its hosts ([]: none advertised)."""
    if state.batch.backend == "local":
        return LocalBackend(state.batch.timeout_s, state.limits, sink, stop), []
    backend = RayBackend(state.batch.ray_address, dataset, state.batch.timeout_s, state.batch.max_memory_gb,
                         sink, stop)
    kinds = backend.kinds()
    if state.batch.every_gpu_kind and not kinds:
        backend.close()
        raise EdlError("--every-gpu-kind: no host of the cluster advertises a GPU kind (resource edl-gpu-<model>); "
                       "start each host with it, see the README")
    return backend, kinds


def _placements(submissions: list[FoundSubmission], kinds: list[str], every_kind: bool
                ) -> list[tuple[FoundSubmission, str | None, bool]]:
    """(submission, GPU kind, whether the kind names its folder): every kind for each with --every-gpu-kind;
    else each submission pinned to one kind in turn, so all its repeats run on one kind of GPU."""
    if every_kind:
        return [(submission, kind, True) for submission in submissions for kind in kinds]
    if len(kinds) <= 1:
        return [(submission, None, False) for submission in submissions]
    return [(submission, kinds[index % len(kinds)], False) for index, submission in enumerate(submissions)]


def _thermal(state: _Batch) -> ThermalRecord:
    if state.batch.backend == "local" or state.config.meter.target_temp_c is not None:
        return batch_target(state.config)
    return ThermalRecord(None, "on a cluster each host settles before each run (--target-temp fixes one for all)",
                         state.config.meter.temp_band_c)


def _prepare(directory: Path, out_root: Path, config: ScoreConfig, batch: BatchConfig, secrets: Secrets
             ) -> tuple[list[FoundSubmission], list[IgnoredEntry], Dataset, _Batch]:
    """Every check that can refuse the batch, before anything is written; then the results root made ready."""
    found = discover(directory, exclude=(out_root,))
    if not found.submissions:
        ignored = "; ".join(f"{entry.name}: {entry.reason}" for entry in found.ignored)
        raise UsageError(f"{directory}: no submissions found (.onnx files, or folders holding one)"
                         + (f"; ignored {ignored}" if ignored else ""))
    unknown = sorted(set(batch.rematch) - {submission.name for submission in found.submissions})
    if unknown:
        raise UsageError(f"--rematch {','.join(unknown)}: no such submission in {directory}")
    dataset = resolve(config.data)
    state = _Batch(out_root, config, batch, data_record(dataset), secrets)
    if not batch.force:
        refuse_incomparable(out_root, config, state.data.fingerprint)
    prepare_out_dir(out_root)
    if batch.force:
        archive_everything(out_root, state.archive)
    else:
        recover(out_root, state.archive)
    return found.submissions, found.ignored, dataset, state


def score_directory(directory: Path, out_root: Path, config: ScoreConfig, batch: BatchConfig | None = None,
                    sink: EventSink = silent, secrets: Secrets | None = None,
                    stop: threading.Event | None = None) -> BatchSummary:
    """Score every submission in ``directory``; returns the batch summary (also written as batch.json when this
    batch measured something, the previous one archived first).

    ``sink`` receives the batch's progress events: ``RunPlaced`` as a run starts on its host, the scoring's own
    events while it runs (the local backend forwards its child's; a Ray host's stay there), ``SubmissionsDone``.
    ``stop``, once set, kills the run in progress and raises ``StoppedError``; the batch is abandoned as on Ctrl-C
    (whole runs stay staged, nothing half-measured is kept, nothing is published)."""
    batch = batch or BatchConfig()
    started_utc, started = utc_now(), time.monotonic()
    submissions, ignored, dataset, state = _prepare(directory, out_root, config, batch, secrets or Secrets())
    backend, kinds = _backend(state, dataset, sink, stop)
    try:
        state.entries = [state.plan(submission, kind, named)
                         for submission, kind, named in _placements(submissions, kinds, batch.every_gpu_kind)]
        measuring = any(entry.pending for entry in state.entries)
        if measuring:
            archive_batch_record(out_root, state.archive, (REFERENCE_NAME,))
        references = ReferenceRuns(batch.reference, out_root, config, state.data, state.secrets) \
            if batch.reference is not None else None
        if measuring:
            state.thermal = _thermal(state)
        if references is not None:
            references.target_temp_c = state.thermal.target_c
        try:
            _run(state, backend, references, sink)
            if stop is not None and stop.is_set():  # stopped as the last run ended: its runs stay staged
                raise StoppedError(STOPPED)
        except BaseException:
            state.abandon()
            raise
    finally:
        backend.close()
    items = [state.finish(entry) for entry in state.entries]
    summary = state.summary(directory, items, started_utc, time.monotonic() - started, references)
    summary.lost_runs, summary.ignored = backend.lost, ignored
    if measuring:
        archive_batch_record(out_root, state.archive, (BATCH_NAME,))
    if measuring or not (out_root / BATCH_NAME).exists():
        write_document(out_root / BATCH_NAME, summary)
    return summary


def _run(state: _Batch, backend: Backend, references: ReferenceRuns | None, sink: EventSink) -> None:
    total = sum(len(entry.pending) for entry in state.entries)
    finished = 0

    def done(job: Job, outcome: ChildOutcome) -> None:
        nonlocal finished
        if references is not None and references.owns(job):
            references.done(job, outcome)
            return
        state.done(job, outcome)
        finished += 1
        sink(SubmissionsDone(job.out_dir.name, finished, total, job.plan.first_run, outcome.host))

    backend.run(state.jobs(references), done)
