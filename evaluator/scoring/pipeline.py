"""Score one submission: the phases before measuring, one or more measured runs, the audit, the sealed result.

The workload marks windows on ``time.monotonic``, the sampler process records power on the same
clock, and the energy is computed from both afterwards. Nothing here prints: progress goes to an
``EventSink`` as events, errors are raised, and the CLI decides how to show them.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.config import DEFAULT_THRESHOLDS, ScoreConfig, Secrets
from evaluator.data.dataset import Dataset
from evaluator.events import EventSink, phase, silent
from evaluator.fileio import prepare_out_dir
from evaluator.report.audit_record import Audit
from evaluator.report.categories import category_for
from evaluator.report.energy import summarise
from evaluator.report.records import DataRecord, utc_now
from evaluator.report.result import RESULT_NAME, RUN_RESULT_NAME, Result, Run, write_result
from evaluator.report.signing import finalise, load_private
from evaluator.runtime.runner import plain_predict
from evaluator.runtime.session import create_session
from evaluator.scoring.audit import AuditSets, Composition, graph_inspection, other_batch_size, run_audit
from evaluator.scoring.cooldown import GpuWatch
from evaluator.scoring.hostinfo import versions
from evaluator.scoring.hostlock import host_lock
from evaluator.scoring.phases import (
    CheckedSubmission,
    check_phase,
    data_phase,
    default_out_dir,
    label_evidence,
    private_phase,
    training_phase,
)
from evaluator.scoring.records import contract_record, data_record, model_record, provider_record
from evaluator.scoring.run import Prepared, measure_run


def _session_warnings(prepared: Prepared) -> list[str]:
    off = prepared.info.nodes_off_provider
    if not off:
        return []
    return [f"{len(off)} node(s) run outside {prepared.info.providers[0]}: " + ", ".join(off[:10])]


def second_composition(prepared: Prepared, model_path: Path, config: ScoreConfig) -> Composition:
    """How the batch-independence check runs the same images again: a fixed batch through the same bound buffers
    (only the composition changes); a free batch at another size by plain runs, on the same session, or where
    CUDA graphs hold the session's fixed shapes (and TensorRT would rebuild its engines) on a second plain one."""
    runner = prepared.runner
    if runner.contract.fixed_batch is not None:
        return Composition(runner.predict, [prepared.batch_size])
    size = other_batch_size(prepared.batch_size)
    session, fresh = runner.session, False
    if prepared.info.cuda_graph or prepared.info.provider == "tensorrt":
        plain = dataclasses.replace(config.runtime, cuda_graph=False,
                                    provider="cuda" if prepared.info.on_gpu else "cpu")
        session, fresh = create_session(model_path, plain)[0], True

    def predict(images: np.ndarray) -> np.ndarray:
        return plain_predict(session, runner.contract, images, size)

    return Composition(predict, [prepared.batch_size, size], fresh)


def audit_phase(prepared: Prepared, dataset: Dataset, sets: AuditSets, config: ScoreConfig, secret: str | None,
                sink: EventSink, first: Run, model_path: Path) -> Audit | None:
    """The generalization audit, outside every window, same session: copies, batch independence, training
    probe and private images, each set in a secret order."""
    if config.audit.off:
        return None
    with phase(sink, "audit"):
        sets = dataclasses.replace(sets, second=second_composition(prepared, model_path, config))
        return run_audit(prepared.runner.predict, dataset, first.correct / dataset.count, config.audit, secret, sets,
                         prepared.info.provider)


def _audit_warnings(audit: Audit) -> list[str]:
    """A check that could not run (the training probe without training images) is said in the result."""
    return [f"generalization audit: {check.name} not run: {check.evidence}" for check in audit.checks
            if check.verdict == "not_run" and check.name != "private_images"]


def assemble(submission: CheckedSubmission, dataset: Dataset, config: ScoreConfig, prepared: Prepared, runs: list[Run],
             audit: Audit | None, warnings: list[str], out_dir: Path) -> Result:
    """The result document of a scored submission (unsealed): a summary of the runs, and the runs."""
    first = runs[0]
    accuracy = first.correct / dataset.count
    if config.audit.off:
        warnings = [*warnings, "the generalization audit was switched off (--audit-copies 0): this result is not "
                    "ranked unless the leaderboard is given --allow-unaudited"]
    elif audit is not None and audit.verdict == "suspect":
        warnings = [*warnings, f"generalization audit: suspect: {audit.reason}"]
    if audit is not None:
        warnings = [*warnings, *_audit_warnings(audit)]
    return Result(
        status="scored", created_utc=utc_now(),
        model=model_record(submission.name, submission.path, submission.report, out_dir), data=data_record(dataset),
        config=config, versions=versions(GpuWatch(config.runtime.gpu).driver()), host=first.host,
        contract=contract_record(submission.contract),
        provider=provider_record(prepared.info, config.runtime.provider, config.runtime.gpu), tuning=prepared.tuning,
        batch_size=prepared.batch_size, batch_size_rule=prepared.batch_size_rule,
        padded_images=prepared.padded_images, warmup_passes=config.warmup_passes,
        correct=first.correct, accuracy=accuracy, category=category_for(accuracy, DEFAULT_THRESHOLDS),
        thresholds=list(DEFAULT_THRESHOLDS), prediction_mismatch_passes=first.prediction_mismatch_passes,
        seconds=statistics.median(run.seconds for run in runs),
        images_per_second=statistics.median(run.images_per_second for run in runs),
        energy=summarise(runs, config.passes, dataset.count), audit=audit, runs=runs,
        warnings=warnings + _session_warnings(prepared) + [w for run in runs for w in run.warnings])


@dataclass(frozen=True)
class Plan:
    """Which runs one process measures: all of them (``edl score``), or one at a time (a score-dir child)."""

    first_run: int = 1
    runs: int | None = None  # None: every repeat the config asks for
    audit: bool = True  # score-dir audits with a submission's first run only
    target_temp_c: float | None = None  # a batch's common temperature, replacing the configured target
    result_name: str = RESULT_NAME


def run_name(run_index: int) -> str:
    """Where a score-dir child leaves one run, until the batch combines a submission's runs."""
    return RUN_RESULT_NAME.format(run_index)


def score(model_path: Path, config: ScoreConfig, out_dir: Path | None = None, sink: EventSink = silent,
          name: str = "", resolved_data: DataRecord | None = None, secrets: Secrets | None = None,
          plan: Plan | None = None) -> Result:
    """Score ``model_path``; write the sealed result into ``out_dir`` and return it.

    ``resolved_data`` is the test set a batch resolved: this scoring must see exactly it. ``sink`` receives the
    scoring's progress events (``evaluator.events``): phases, images and passes done, waits.
    """
    secrets, plan = secrets or Secrets(), plan or Plan()
    key = load_private(secrets.signing_key) if secrets.signing_key is not None else None  # a bad key fails now
    submission = check_phase(model_path, config, sink, name)
    dataset = data_phase(config, sink, resolved_data)
    submission = label_evidence(submission, dataset)
    # Only the run that audits reads the audit's sets: a score-dir child of a later run would decode the
    # 50,000 training images for nothing.
    private = private_phase(config) if plan.audit else None
    training, training_missing = training_phase(config) if plan.audit else (None, "")
    out_dir = prepare_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(model_path))
    warnings = list(submission.report.warnings)
    if not dataset.official:
        warnings.append(f"data: {dataset.note or 'not the official test set'}")
    prepared, runs, audit = None, [], None
    with host_lock(sink):  # one scoring per host: CPU energy is the whole host's
        for index in range(plan.first_run, plan.first_run + (plan.runs or config.repeat)):
            run, prepared = measure_run(submission, dataset, config, out_dir, index, sink, prepared,
                                        plan.target_temp_c)
            runs.append(run)
        assert prepared is not None
        if plan.audit:
            sets = AuditSets(private=private, training=training, training_missing=training_missing,
                             graph=graph_inspection(submission.report.evidence))
            audit = audit_phase(prepared, dataset, sets, config, secrets.audit_secret, sink, runs[0],
                                submission.path)
    result = finalise(assemble(submission, dataset, config, prepared, runs, audit, warnings, out_dir), key)
    write_result(out_dir / plan.result_name, result)
    return result


def combine(parts: list[Result]) -> Result:
    """One submission's result from results of some of its runs each (score-dir's children): runs in order,
    the summary recomputed, the audit from the part that ran it. Unsealed: the caller seals (and signs)."""
    runs = sorted((run for part in parts for run in part.runs), key=lambda run: run.index)
    first = min(parts, key=lambda part: part.runs[0].index)
    audit = next((part.audit for part in parts if part.audit is not None), None)
    assert first.data is not None
    warnings = list(dict.fromkeys(w for part in parts for w in part.warnings))
    return dataclasses.replace(
        first, created_utc=utc_now(), runs=runs, audit=audit, warnings=warnings,
        seconds=statistics.median(run.seconds for run in runs),
        images_per_second=statistics.median(run.images_per_second for run in runs),
        energy=summarise(runs, first.passes, first.data.images), integrity=None, signature=None)
