"""``edl verify``'s audit checks: the verdict from the recorded figures, and (with the secret) every audit set
re-derived and classified again on the CPU, in its secret order."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.data.dataset import Dataset
from evaluator.data.store import load_path, load_training, resolve
from evaluator.errors import DataError
from evaluator.report.result import Result
from evaluator.runtime.runner import BoundRunner, make_batches, plain_predict
from evaluator.runtime.session import create_session
from evaluator.scoring.audit import (
    GRAPH_CHECK,
    Composition,
    audit_copies,
    batch_independence,
    commitment,
    copy_predictions,
    in_secret_order,
    outcome,
    recheck,
    training_probe,
    verdict,
)
from evaluator.scoring.checklist import Checks, close

REAUDIT_TOLERANCE = 0.002  # a share of the images that another provider's numerics may classify differently


def _audit_figures(result: Result, checks: Checks) -> None:
    """The verdict follows from the recorded figures (whatever the secret): each named check's from its figure and
    threshold, the audit's from its checks (results before named checks: from the copies and private images)."""
    audit, accuracy = result.audit, result.accuracy
    assert audit is not None and accuracy is not None and result.data is not None
    mean = sum(audit.correct) / (len(audit.correct) * result.data.images)
    checks.add("audit accuracy = mean of its copies", close(audit.accuracy, mean), f"{audit.correct}")
    for check in audit.checks:
        checks.add(f"audit check {check.name}: verdict follows from figure and threshold",
                   recheck(check) == check.verdict, f"{check.figure} against {check.threshold}: {check.verdict}")
    graph = next((check for check in audit.checks if check.name == GRAPH_CHECK), None)
    if graph is not None:
        strong = sum(1 for finding in result.model.evidence if finding.strength == "strong")
        checks.add(f"audit check {GRAPH_CHECK}: figure = strong findings in model.evidence", graph.figure == strong,
                   f"{graph.figure} recorded, {strong} strong finding(s) recorded")
    expected = outcome(audit.checks)[0] if audit.checks else verdict(accuracy, audit.accuracy, audit.private,
                                                                     result.config.audit)[0]
    checks.add("audit verdict follows from its figures", expected == audit.verdict, audit.verdict)


@dataclass
class _Again:
    """What re-deriving the audit on the CPU needs: the test set, the runner, and how close is close."""

    dataset: Dataset
    runner: BoundRunner
    session: Any
    allowed: int


def _allowed(images: int) -> int:
    return max(2, int(REAUDIT_TOLERANCE * images))  # another provider may flip a few predictions


def _again_batch(result: Result, again: _Again, secret: str, first: tuple[np.ndarray, np.ndarray],
                 checks: Checks) -> None:
    batch = result.audit.batch if result.audit is not None else None
    if batch is None:
        return
    contract = again.runner.contract
    second = (Composition(again.runner.predict, batch.batch_sizes) if len(batch.batch_sizes) < 2 else
              Composition(partial(plain_predict, again.session, contract, batch_size=batch.batch_sizes[1]),
                          batch.batch_sizes))
    redone = batch_independence(first[1], first[0], second, secret, again.dataset.fingerprint, result.config.audit)
    checks.add("audit check batch_independence re-derived", abs(redone.changed - batch.changed) <= again.allowed,
               f"recorded {batch.changed} changed, on the CPU now {redone.changed} (allowed difference "
               f"{again.allowed})")


def _again_training(result: Result, again: _Again, secret: str, data: Path | None, checks: Checks) -> None:
    probe = result.audit.training if result.audit is not None else None
    if probe is None:
        return
    name = "audit check training_probe re-derived"
    try:
        training, missing = load_training(result.config.audit.train_data, data or result.config.data)
    except DataError as exc:
        training, missing = None, str(exc)
    if training is None or training.fingerprint != probe.fingerprint:
        checks.add(name, None, missing or "the training images at hand are not the ones probed")
        return
    redone = training_probe(again.runner.predict, training, secret, result.accuracy or 0.0, result.config.audit)
    allowed = _allowed(probe.images)
    checks.add(name, abs(redone.correct - probe.correct) <= allowed,
               f"recorded {probe.correct}/{probe.images}, on the CPU now {redone.correct} (allowed difference "
               f"{allowed})")


def _again_private(result: Result, again: _Again, secret: str, checks: Checks) -> None:
    private = result.audit.private if result.audit is not None else None
    if private is None or not result.audit.secret_order:  # type: ignore[union-attr]
        return
    name, path = "audit check private_images re-derived", result.config.audit.private_data
    held = load_path(path) if path is not None and Path(path).exists() else None
    if held is None or held.fingerprint != private.fingerprint:
        checks.add(name, None, "the organiser's private images are not at hand")
        return
    predict = in_secret_order(again.runner.predict, secret, held.fingerprint, "private")
    correct = int(np.count_nonzero(predict(held.images) == held.labels))
    allowed = _allowed(held.count)
    checks.add(name, abs(correct - private.correct) <= allowed,
               f"recorded {private.correct}/{private.images}, on the CPU now {correct} (allowed difference {allowed})")


def _audit_again(result: Result, model_path: Path, secret: str, data: Path | None, checks: Checks) -> None:
    """Re-derive every audit set from the secret and classify it again, on the CPU, in its secret order."""
    audit = result.audit
    assert audit is not None and result.data is not None
    dataset = resolve(data if data is not None else result.config.data, allow_download=False)
    if dataset.fingerprint != result.data.fingerprint:
        checks.add("audit copies re-derived", False, f"the test set at hand ({dataset.fingerprint[:16]}…) is not the "
                   "one scored; pass --data with the scored test set")
        return
    contract = check_submission(model_path, result.config.limits).contract
    if contract is None:
        checks.add("audit copies re-derived", False, f"{model_path} no longer passes edl check")
        return
    session, info = create_session(model_path, RuntimeConfig(provider="cpu"))
    batches, _ = make_batches(dataset.images, contract, result.batch_size or contract.batch_size(None)[0])
    again = _Again(dataset, BoundRunner(session, contract, batches, info, 0, dataset.count), session,
                   _allowed(dataset.count))
    predict = again.runner.predict
    copies = (list(copy_predictions(predict, dataset, secret, result.config.audit)) if audit.secret_order else
              [(copy, predict(copy)) for copy in audit_copies(dataset, secret, result.config.audit)])
    redone = [int(np.count_nonzero(predictions == dataset.labels)) for _, predictions in copies]
    close = all(abs(a - b) <= again.allowed for a, b in zip(redone, audit.correct, strict=True))
    checks.add("audit copies re-derived and classified again", close,
               f"recorded {audit.correct}, on the CPU now {redone} (allowed difference {again.allowed} per copy)")
    _again_batch(result, again, secret, copies[0], checks)
    _again_training(result, again, secret, data, checks)
    _again_private(result, again, secret, checks)


def check_audit(result: Result, model_path: Path | None, secret: str | None, data: Path | None,
                 checks: Checks) -> None:
    if result.audit is None:
        checks.add("generalization audit", None, "this result has no audit (--audit-copies 0, or an older result)")
        return
    _audit_figures(result, checks)
    if secret is None:
        why = ("pass --audit-secret (or EDL_AUDIT_SECRET) to re-derive the audit copies"
               if result.audit.organiser_secret
               else "the audit used a one-off secret that was never kept: it cannot be re-derived")
        checks.add("audit secret", None, why)
        return
    checks.add("audit secret matches the recorded commitment", commitment(secret) == result.audit.seed_commitment)
    if commitment(secret) != result.audit.seed_commitment or model_path is None:
        return
    _audit_again(result, model_path, secret, data, checks)
