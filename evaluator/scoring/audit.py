"""The generalization audit: the submission also classifies copies of the test set it cannot have memorised.

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
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator

import numpy as np

from evaluator.config import AuditConfig
from evaluator.data.dataset import Dataset
from evaluator.data.transforms import FLIP_PROBABILITY, apply, draw
from evaluator.report.result import Audit, PrivateCheck
from evaluator.scoring.unseen import FIT_NAME, OFFICIAL_TEST_IMAGES, expect

AUDIT_TAG = "edl-audit-v1"
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


def verdict(public_accuracy: float, audit_accuracy: float, private: PrivateCheck | None,
            config: AuditConfig) -> tuple[str, str]:
    """``pass``, or ``suspect`` with the reason in one line."""
    reasons = []
    drop = (public_accuracy - audit_accuracy) * 100
    if drop > config.audit_tolerance_points:
        reasons.append(f"accuracy {public_accuracy:.1%} on the test set but {audit_accuracy:.1%} on shifted/flipped "
                       f"copies (a drop of {drop:.1f} points, tolerance {config.audit_tolerance_points:g}): "
                       "memorisation suspected")
    if private is not None and private.gap_points > private.tolerance_points:
        reasons.append(_private_reason(public_accuracy, private))
    return ("suspect", "; ".join(reasons)) if reasons else ("pass", "")


def run_audit(predict: Predict, dataset: Dataset, public_accuracy: float, config: AuditConfig, secret: str | None,
              private: Dataset | None = None, provider: str = "") -> Audit | None:
    """Classify the audit copies (and the private images) with ``predict``; None when the audit is off."""
    if config.audit_copies == 0:
        return None
    started = time.monotonic()
    organiser = secret is not None
    secret = secret if secret is not None else new_secret()
    correct = [int(np.count_nonzero(predict(copy) == dataset.labels)) for copy in audit_copies(dataset, secret, config)]
    accuracy = sum(correct) / (len(correct) * dataset.count)
    checked = _private(predict, private, public_accuracy, config, dataset.count) if private is not None else None
    outcome, reason = verdict(public_accuracy, accuracy, checked, config)
    return Audit(verdict="pass" if outcome == "pass" else "suspect", reason=reason, family=family(config),
                 copies=config.audit_copies, shift_px=config.audit_shift_px, seed_commitment=commitment(secret),
                 organiser_secret=organiser, correct=correct, accuracy=accuracy,
                 drop_points=(public_accuracy - accuracy) * 100, tolerance_points=config.audit_tolerance_points,
                 private=checked, provider=provider, seconds=time.monotonic() - started)
