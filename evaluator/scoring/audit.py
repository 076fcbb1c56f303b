"""The generalization audit: named checks that the submission learned CIFAR-10 rather than stored the test set.

The test set is public, so a graph can memorise it. Every scoring therefore also runs the
submission, outside the measured window and unmetered, on ``audit_copies`` copies of the test set
in which each image is flipped (probability 1/2) and translated by up to ``audit_shift_px`` pixels
with reflect padding: label-preserving changes that properly trained CIFAR-10 models shrug off
(they lose at most about one point, bench/audit_strength.py) and that ruin a lookup (about 87
points). Which image gets which transform is drawn from the organiser's secret, so no team can
precompute the copies; the result records only the secret's hash. A drop larger than the
tolerance makes the result ``suspect``: the leaderboard lists it under review instead of ranking it.

The organiser's images no team has seen (``--private-data``, e.g. CIFAR-10.1) are scored the same
way; a private accuracy below what an honest model of the same test-set accuracy is expected to
reach (``scoring.unseen``), by more than the tolerance, is suspect too.

Each piece of evidence is a named check (``Audit.checks``), and any failing one makes the result
suspect: ``copies`` (the drop above); ``batch_independence`` (the same images in two secret batch
compositions, and two batch sizes where the graph's batch is free, get the same predictions: a graph
that recognises its batch fails); ``training_probe`` (a secret sample of the official training
images scores at least about the test accuracy: a store of the test set scores near chance);
``private_images`` (the organiser's held-back images, ``--private-data``). Every audit set reaches
the model in an order drawn from the secret, so an image's batch and position carry nothing; the
predictions are put back in order. The measured passes are untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from evaluator.config import AuditConfig
from evaluator.contract.evidence import Finding, graph_check
from evaluator.data.dataset import Dataset
from evaluator.data.transforms import FLIP_PROBABILITY, apply, draw
from evaluator.report.audit_record import Audit, AuditCheck, BatchIndependence, PrivateCheck, TrainingProbe
from evaluator.scoring.unseen import FIT_NAME, OFFICIAL_TEST_IMAGES, expect

AUDIT_TAG = "edl-audit-v1"
GRAPH_CHECK = "graph_inspection"
Predict = Callable[[np.ndarray], np.ndarray]


def new_secret() -> str:
    """A one-off secret for a scoring without the organiser's: fair, but not re-checkable later."""
    return secrets.token_hex(32)


def commitment(secret: str) -> str:
    """What the result records of the secret: its hash, which proves the secret later without revealing it."""
    return hashlib.sha256(f"{AUDIT_TAG}|commitment|{secret}".encode()).hexdigest()


def copy_generator(secret: str, data_fingerprint: str, copy_index: int) -> np.random.Generator:
    """The generator that draws copy ``copy_index`` of this data set: the same secret, the same copies."""
    message = f"{AUDIT_TAG}|{data_fingerprint}|{copy_index}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def secret_generator(secret: str, data_fingerprint: str, purpose: str) -> np.random.Generator:
    """A generator for one of the audit's other secret draws (an order, a sample), apart from the copies'."""
    message = f"{AUDIT_TAG}|{data_fingerprint}|{purpose}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def in_secret_order(predict: Predict, secret: str, data_fingerprint: str, purpose: str) -> Predict:
    """``predict``, but the images reach the model in a secret order and the predictions come back in theirs."""

    def ordered(images: np.ndarray) -> np.ndarray:
        order = secret_generator(secret, data_fingerprint, f"order|{purpose}").permutation(len(images))
        predictions = np.empty(len(images), np.int64)
        predictions[order] = predict(images[order])
        return predictions

    return ordered


def audit_copies(dataset: Dataset, secret: str, config: AuditConfig) -> Iterator[np.ndarray]:
    """The audit copies of ``dataset``'s images, one at a time (each is as large as the test set)."""
    for index in range(config.audit_copies):
        transforms = draw(dataset.count, config.audit_shift_px, copy_generator(secret, dataset.fingerprint, index))
        yield apply(dataset.images, transforms)


def family(config: AuditConfig) -> str:
    return (f"horizontal flip (p={FLIP_PROBABILITY:g}) and translation by up to {config.audit_shift_px} px on each "
            "axis with reflect padding, drawn per image")


def _private(predict: Predict, private: Dataset, public_accuracy: float, config: AuditConfig,
             test_images: int = OFFICIAL_TEST_IMAGES) -> PrivateCheck:
    """Unseen images: the accuracy an honest model of this test-set accuracy should reach, and how far below fails.

    ``test_images``: how many images the test-set accuracy was taken over (its binomial error is one
    part of the tolerance; see ``scoring.unseen``).
    """
    correct = int(np.count_nonzero(predict(private.images) == private.labels))
    accuracy = correct / private.count
    expectation = expect(public_accuracy, test_images, private.count)
    override = config.private_tolerance_points
    allowed = override if override is not None else config.private_tolerance_sd * expectation.combined_sd_points
    return PrivateCheck(fingerprint=private.fingerprint, images=private.count, correct=correct, accuracy=accuracy,
                        gap_points=(public_accuracy - accuracy) * 100,
                        tolerance_points=(public_accuracy - expectation.expected) * 100 + allowed,
                        expected_accuracy=expectation.expected, fit=FIT_NAME,
                        shortfall_points=(expectation.expected - accuracy) * 100, allowed_shortfall_points=allowed,
                        tolerance_sd=None if override is not None else config.private_tolerance_sd,
                        combined_sd_points=expectation.combined_sd_points,
                        fit_sd_points=expectation.fit_sd_points, test_sd_points=expectation.test_sd_points,
                        private_sd_points=expectation.private_sd_points, test_images=test_images)


def _private_reason(public_accuracy: float, private: PrivateCheck) -> str:
    """Why the unseen images make a result suspect, in one line (older results: a fixed gap)."""
    if private.expected_accuracy is None or private.shortfall_points is None:
        return (f"accuracy {public_accuracy:.1%} on the test set but {private.accuracy:.1%} on the organiser's "
                f"private images (a gap of {private.gap_points:.1f} points, tolerance "
                f"{private.tolerance_points:g}): trained on the test set, or memorised it")
    rule = (f"{private.tolerance_sd:g} sd of {private.combined_sd_points:.2f}" if private.tolerance_sd is not None
            and private.combined_sd_points is not None else "set by the organiser")
    return (f"accuracy {public_accuracy:.1%} on the test set but {private.accuracy:.1%} on {private.images} unseen "
            f"images, where an honest model is expected to score {private.expected_accuracy:.1%} (a shortfall of "
            f"{private.shortfall_points:.1f} points, tolerance {private.allowed_shortfall_points:.2f} = {rule}): "
            "trained on the test set, or memorised it")


def judged(name: str, figure: float, threshold: float, passed: str, failed: str) -> AuditCheck:
    """A check that fails when its figure exceeds its threshold, with the evidence line for either outcome."""
    ok = figure <= threshold
    return AuditCheck(name=name, figure=figure, threshold=threshold, verdict="pass" if ok else "fail",
                      evidence=passed if ok else failed)


def copies_check(public_accuracy: float, audit_accuracy: float, config: AuditConfig) -> AuditCheck:
    drop = (public_accuracy - audit_accuracy) * 100
    seen = f"accuracy {public_accuracy:.1%} on the test set"
    return judged("copies", drop, config.audit_tolerance_points,
                  f"{seen}, {audit_accuracy:.1%} on secret shifted/flipped copies (a drop of {drop:.1f} points)",
                  f"{seen} but {audit_accuracy:.1%} on shifted/flipped copies (a drop of {drop:.1f} points, tolerance "
                  f"{config.audit_tolerance_points:g}): memorisation suspected")


def private_check(public_accuracy: float, private: PrivateCheck | None) -> AuditCheck:
    if private is None:
        return AuditCheck("private_images", None, None, "not_run", "no --private-data: generalization not checked on "
                          "images no team has seen")
    seen = f"accuracy {public_accuracy:.1%} on the test set"
    gap = (f"{private.accuracy:.1%} on the organiser's {private.images} private images (a gap of "
           f"{private.gap_points:.1f} points")
    return judged("private_images", private.gap_points, private.tolerance_points, f"{seen}, {gap})",
                  _private_reason(public_accuracy, private))


def batch_check(batch: BatchIndependence) -> AuditCheck:
    sizes = " and ".join(str(size) for size in batch.batch_sizes)
    seen = (f"{batch.changed} of {batch.images} predictions changed between two secret batch compositions "
            f"(batch size{'s' if len(batch.batch_sizes) > 1 else ''} {sizes})")
    return judged("batch_independence", batch.changed_pct, batch.tolerance_pct, seen,
                  f"{seen}, {batch.changed_pct:.2f} % over the tolerance of {batch.tolerance_pct:g} %: the graph reads "
                  "its batchmates")


def training_check(public_accuracy: float, probe: TrainingProbe | None, missing: str) -> AuditCheck:
    if probe is None:
        return AuditCheck("training_probe", None, None, "not_run", missing)
    seen = f"accuracy {public_accuracy:.1%} on the test set"
    probed = f"{probe.accuracy:.1%} on {probe.images} secret training images (a gap of {probe.gap_points:.1f} points"
    return judged("training_probe", probe.gap_points, probe.tolerance_points, f"{seen}, {probed})",
                  f"{seen} but {probed}, tolerance {probe.tolerance_points:g}): the test set's answers are stored, "
                  "not learned")


def graph_inspection(findings: list[Finding]) -> AuditCheck:
    """The graph inspection's verdict as a named check: a strong finding puts the result under review."""
    found = graph_check(findings)
    return AuditCheck(name=GRAPH_CHECK, figure=found.figure, threshold=found.threshold,
                      verdict="pass" if found.verdict == "pass" else "fail", evidence=found.evidence)


def outcome(checks: list[AuditCheck]) -> tuple[str, str]:
    """``pass``, or ``suspect`` with every failing check's evidence in one line."""
    failing = [check.evidence for check in checks if check.verdict == "fail"]
    return ("suspect", "; ".join(failing)) if failing else ("pass", "")


def verdict(public_accuracy: float, audit_accuracy: float, private: PrivateCheck | None,
            config: AuditConfig) -> tuple[str, str]:
    """The verdict of the copies and the private images alone (what results before the other checks judged)."""
    return outcome([copies_check(public_accuracy, audit_accuracy, config), private_check(public_accuracy, private)])


def recheck(check: AuditCheck) -> str:
    """The verdict a recorded check's figure and threshold imply."""
    if check.figure is None or check.threshold is None:
        return "not_run"
    return "pass" if check.figure <= check.threshold else "fail"


@dataclass(frozen=True)
class Composition:
    """How the batch-independence check runs its second composition: the runner's own predict (a fixed batch),
    or a plain run at another batch size (``batch_sizes`` [first, second])."""

    predict: Predict
    batch_sizes: list[int] = field(default_factory=list)
    second_session: bool = False


def other_batch_size(batch_size: int) -> int:
    """A second batch size for a graph whose batch is free: about half, and not a divisor of common set sizes."""
    return batch_size // 2 + 1 if batch_size > 2 else batch_size + 1


def batch_independence(first: np.ndarray, images: np.ndarray, second: Composition, secret: str, fingerprint: str,
                       config: AuditConfig) -> BatchIndependence:
    """``first``: predictions of ``images`` in one secret composition; these run again in another."""
    again = in_secret_order(second.predict, secret, fingerprint, "batch")(images)
    changed = int(np.count_nonzero(again != first))
    return BatchIndependence(images=len(images), changed=changed, changed_pct=100 * changed / len(images),
                             tolerance_pct=config.batch_tolerance_pct, batch_sizes=list(second.batch_sizes),
                             second_session=second.second_session)


def training_sample(training: Dataset, secret: str, config: AuditConfig) -> np.ndarray:
    """Which training images the probe classifies, in the order they reach the model: drawn from the secret."""
    count = min(config.train_probe_images, training.count)
    return secret_generator(secret, training.fingerprint, "sample|train").choice(training.count, count, replace=False)


def training_probe(predict: Predict, training: Dataset, secret: str, public_accuracy: float,
                   config: AuditConfig) -> TrainingProbe:
    chosen = training_sample(training, secret, config)
    correct = int(np.count_nonzero(predict(training.images[chosen]) == training.labels[chosen]))
    accuracy = correct / len(chosen)
    return TrainingProbe(fingerprint=training.fingerprint, available=training.count, images=len(chosen),
                         correct=correct, accuracy=accuracy, gap_points=(public_accuracy - accuracy) * 100,
                         tolerance_points=config.train_tolerance_points)


def copy_predictions(predict: Predict, dataset: Dataset, secret: str,
                     config: AuditConfig) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each audit copy and its predictions, the copy run in its own secret order."""
    for index, copy in enumerate(audit_copies(dataset, secret, config)):
        yield copy, in_secret_order(predict, secret, dataset.fingerprint, f"copy{index}")(copy)


@dataclass(frozen=True)
class AuditSets:
    """The images the audit classifies beside the test set, and how the second batch composition runs."""

    private: Dataset | None = None
    training: Dataset | None = None
    training_missing: str = "no training images given"
    second: Composition | None = None
    graph: AuditCheck | None = None  # the static graph inspection (``contract.evidence``), as one named check


def _training_missing(config: AuditConfig, sets: AuditSets) -> str:
    return ("--train-probe-images 0 switched the training-image probe off" if config.train_probe_images == 0
            else sets.training_missing)


def run_audit(predict: Predict, dataset: Dataset, public_accuracy: float, config: AuditConfig, secret: str | None,
              sets: AuditSets | None = None, provider: str = "") -> Audit | None:
    """Run every check with ``predict``, each set in a secret order; None when the audit is off."""
    if config.off:
        return None
    started, sets = time.monotonic(), sets or AuditSets()
    organiser = secret is not None
    secret = secret if secret is not None else new_secret()
    correct, first = [], None
    for copy, predictions in copy_predictions(predict, dataset, secret, config):
        correct.append(int(np.count_nonzero(predictions == dataset.labels)))
        first = first if first is not None else (copy, predictions)
    assert first is not None
    accuracy = sum(correct) / (len(correct) * dataset.count)
    batch = batch_independence(first[1], first[0], sets.second or Composition(predict), secret, dataset.fingerprint,
                               config)
    checked = (_private(in_secret_order(predict, secret, sets.private.fingerprint, "private"), sets.private,
                        public_accuracy, config, dataset.count) if sets.private is not None else None)
    probe = (training_probe(predict, sets.training, secret, public_accuracy, config)
             if sets.training is not None and config.train_probe_images > 0 else None)
    checks = [copies_check(public_accuracy, accuracy, config), batch_check(batch),
              training_check(public_accuracy, probe, _training_missing(config, sets)),
              private_check(public_accuracy, checked), *([sets.graph] if sets.graph is not None else [])]
    verdict_now, reason = outcome(checks)
    return Audit(verdict="pass" if verdict_now == "pass" else "suspect", reason=reason, family=family(config),
                 copies=config.audit_copies, shift_px=config.audit_shift_px, seed_commitment=commitment(secret),
                 organiser_secret=organiser, correct=correct, accuracy=accuracy,
                 drop_points=(public_accuracy - accuracy) * 100, tolerance_points=config.audit_tolerance_points,
                 private=checked, provider=provider, seconds=time.monotonic() - started, checks=checks,
                 secret_order=True, batch=batch, training=probe)
