"""A fixed reference submission scored through a batch: if its energy moves, the machine drifted."""

from __future__ import annotations

import statistics
from pathlib import Path

from evaluator.batch.child import ChildOutcome, Job
from evaluator.config import ScoreConfig, Secrets
from evaluator.errors import ResultError
from evaluator.fileio import sha256_file
from evaluator.report.batch_record import ReferenceRecord, ReferenceRun
from evaluator.report.reader import read_result
from evaluator.report.records import DataRecord, utc_now
from evaluator.scoring.pipeline import Plan, run_name

REFERENCE_NAME = "_reference"
# Repeated runs within one session agree to ~0.4 % (bench/RESULTS.md); more than this is drift worth a look.
DRIFT_LIMIT_PCT = 2.0


class ReferenceRuns:
    """The reference's jobs, one run each, and what they measured."""

    def __init__(self, model: Path, out_root: Path, config: ScoreConfig, data: DataRecord, secrets: Secrets) -> None:
        self.model, self.config, self.data, self.secrets = model.resolve(), config, data, secrets
        self.out_dir = out_root / REFERENCE_NAME
        self.target_temp_c: float | None = None
        self.runs: list[ReferenceRun] = []
        self._after: dict[int, tuple[int, str]] = {}

    def owns(self, job: Job) -> bool:
        return job.out_dir == self.out_dir

    def job(self, scorings: int) -> Job:
        index = len(self._after) + 1
        self._after[index] = (scorings, utc_now())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan = Plan(first_run=index, runs=1, audit=False, target_temp_c=self.target_temp_c,
                    result_name=run_name(index))
        return Job(self.model, REFERENCE_NAME, self.out_dir, self.config, self.data, plan, self.secrets)

    def done(self, job: Job, outcome: ChildOutcome) -> None:
        index = job.plan.first_run
        after, started = self._after[index]
        if outcome.failure is not None:
            self.runs.append(ReferenceRun(index, after, started, None, None, None, outcome.failure))
            return
        try:
            run = read_result(self.out_dir / run_name(index)).runs[0]
        except ResultError as exc:
            self.runs.append(ReferenceRun(index, after, started, None, None, None, str(exc)))
            return
        self.runs.append(ReferenceRun(index, after, started, run.energy.total_j, run.seconds, run.start_temp_c))

    def record(self) -> ReferenceRecord:
        totals = [run.total_j for run in self.runs if run.total_j is not None]
        drift = (max(totals) - min(totals)) / statistics.median(totals) * 100 if len(totals) >= 2 else None
        warning = ""
        if drift is not None and drift > DRIFT_LIMIT_PCT:
            warning = (f"the reference's energy moved {drift:.1f} % during the batch (limit {DRIFT_LIMIT_PCT:g} %): "
                       "the machine drifted; compare close results with care, or rescore them together")
        elif drift is None:
            warning = "the reference has fewer than two measured runs: drift unknown"
        return ReferenceRecord(model=str(self.model), sha256=sha256_file(self.model), runs=self.runs,
                               drift_pct=drift, drift_limit_pct=DRIFT_LIMIT_PCT, warning=warning)
