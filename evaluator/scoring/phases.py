"""Before anything is measured: the submission checked, the test set (and private images) loaded, the result
folder writable (``fileio.prepare_out_dir``). Each phase refuses early with a clear reason, so nothing
half-measured is ever written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import onnx

from evaluator.config import ScoreConfig
from evaluator.contract.check import CheckReport, check_submission, evidence_warning
from evaluator.contract.evidence import match_labels
from evaluator.contract.spec import Contract
from evaluator.data.dataset import Dataset
from evaluator.data.store import load_path, load_training, resolve
from evaluator.errors import DataError, SubmissionError
from evaluator.events import EventSink, phase
from evaluator.report.records import DataRecord


@dataclass(frozen=True)
class CheckedSubmission:
    """A submission that passed its checks: what it is and how to feed it."""

    name: str
    path: Path
    report: CheckReport
    contract: Contract


def default_out_dir(model_path: Path) -> Path:
    return Path("results") / Path(model_path).stem


def check_phase(model_path: Path, config: ScoreConfig, sink: EventSink, name: str = "") -> CheckedSubmission:
    """The same checks as ``edl check``; an invalid submission is refused before anything runs."""
    with phase(sink, "check"):
        report = check_submission(model_path, config.limits)
    if not report.valid or report.contract is None:
        raise SubmissionError(report.problems)
    return CheckedSubmission(name or Path(model_path).stem, Path(model_path), report, report.contract)


def label_evidence(submission: CheckedSubmission, dataset: Dataset) -> CheckedSubmission:
    """The graph's stored labels compared with the test labels in order; a match is a strong finding (warned)."""
    report = submission.report
    if not any(finding.kind in ("labels", "lookup") and finding.tensor for finding in report.evidence):
        return submission  # honest graphs: nothing to compare, the model is not read again
    model = onnx.load(submission.path, load_external_data=False)
    evidence = match_labels(model, report.evidence, dataset.labels)
    warnings = list(report.warnings)
    warnings += [evidence_warning(after) for before, after in zip(report.evidence, evidence, strict=False)
                 if after.strength == "strong" and before.strength != "strong"]
    return dataclasses.replace(submission, report=dataclasses.replace(report, evidence=evidence, warnings=warnings))


def data_phase(config: ScoreConfig, sink: EventSink, resolved: DataRecord | None = None) -> Dataset:
    """The test set; with ``resolved``, exactly the one a batch resolved, recorded as the batch resolved it.

    The same bytes (by SHA-256) are the same test set: a copy a Ray host received is as official, and
    comes from the same source, as what the driver verified.
    """
    with phase(sink, "data"):
        dataset = resolve(config.data, sink=sink)  # a download tells its bytes
    if resolved is None:
        return dataset
    if dataset.fingerprint != resolved.fingerprint:
        raise DataError(f"the test set here ({dataset.source}, fingerprint {dataset.fingerprint[:16]}…) is not the "
                        f"one the batch resolved ({resolved.fingerprint[:16]}…); give every host the same --data")
    return dataclasses.replace(dataset, source=resolved.source, official=resolved.official,
                               note="" if resolved.official else dataset.note)


def private_phase(config: ScoreConfig) -> Dataset | None:
    """The organiser's held-back images, read before anything is measured (a bad path fails early)."""
    return load_path(config.audit.private_data) if config.audit.private_data is not None else None


def training_phase(config: ScoreConfig) -> tuple[Dataset | None, str]:
    """The training images for the audit's probe, read before anything is measured; None and why when there are
    none (the probe is then not run, and the result says so)."""
    if config.audit.off or config.audit.train_probe_images == 0:
        return None, "the training-image probe is switched off"
    return load_training(config.audit.train_data, config.data)
