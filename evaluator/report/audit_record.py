"""The generalization audit's records: the evidence, in a result, that the model generalises (its ``audit``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from evaluator.typedjson import doc


@dataclass
class PrivateCheck:
    """The submission on the organiser's held-back images, beside its test-set accuracy."""

    fingerprint: str
    images: int
    correct: int
    accuracy: float
    gap_points: float = field(metadata=doc("test-set accuracy minus private accuracy, in percentage points"))
    tolerance_points: float = field(metadata=doc("the largest gap that still passes: test-set minus expected "
                                                 "accuracy plus allowed_shortfall_points (older results: a "
                                                 "fixed number of points)"))
    expected_accuracy: float | None = field(default=None, metadata=doc(
        "what an honest model of this test-set accuracy is expected to score on images drawn anew (the fit); "
        "null in results made before the fit"))
    fit: str = field(default="", metadata=doc("the fit that gives the expected accuracy"))
    shortfall_points: float | None = field(default=None, metadata=doc(
        "expected minus private accuracy, in percentage points: the check fails above allowed_shortfall_points"))
    allowed_shortfall_points: float | None = field(default=None, metadata=doc(
        "tolerance_sd times combined_sd_points, or the organiser's override in points"))
    tolerance_sd: float | None = field(default=None, metadata=doc(
        "standard deviations allowed (null when the organiser gave the tolerance in points)"))
    combined_sd_points: float | None = field(default=None, metadata=doc(
        "the combined standard deviation: the root sum of squares of the three parts below"))
    fit_sd_points: float | None = field(default=None, metadata=doc(
        "the fit's spread (residuals and the line's own uncertainty) at the expected accuracy"))
    test_sd_points: float | None = field(default=None, metadata=doc(
        "binomial error of the test-set accuracy on test_images images, through the fit's slope"))
    private_sd_points: float | None = field(default=None, metadata=doc(
        "binomial error of the private accuracy on images images, at the expected accuracy"))
    test_images: int | None = field(default=None, metadata=doc("images the test-set accuracy was taken over"))


@dataclass
class TrainingProbe:
    """The submission on a secret sample of the official training images, beside its test-set accuracy.

    An honest model scores at least about its test accuracy there (more where it trained on them);
    a memoriser of the test set scores near chance."""

    fingerprint: str = field(metadata=doc("of the training images the sample was drawn from"))
    available: int = field(metadata=doc("training images given"))
    images: int = field(metadata=doc("training images in the secret sample"))
    correct: int
    accuracy: float
    gap_points: float = field(metadata=doc("test-set accuracy minus probe accuracy, in percentage points"))
    tolerance_points: float


@dataclass
class BatchIndependence:
    """The same images in two secret batch compositions: an honest model's predictions do not depend on their
    batchmates."""

    images: int
    changed: int = field(metadata=doc("images whose prediction differs between the two compositions"))
    changed_pct: float
    tolerance_pct: float
    batch_sizes: list[int] = field(metadata=doc("the batch size of each composition (two where the graph's batch "
                                                "is free)"))
    second_session: bool = field(default=False, metadata=doc("the second composition ran on a plain session "
                                                             "without CUDA graphs"))


CheckVerdict = Literal["pass", "fail", "not_run"]


@dataclass
class AuditCheck:
    """One named piece of evidence that the model generalises: its figure against its threshold."""

    name: str
    figure: float | None = field(metadata=doc("what was measured (None: not run)"))
    threshold: float | None = field(metadata=doc("the largest figure that passes"))
    verdict: CheckVerdict
    evidence: str = field(metadata=doc("one line: what was measured, or why it did not run"))


@dataclass
class Audit:
    """The generalization audit: accuracy on secret flipped and shifted copies of the test set, every named check,
    and the verdict (suspect when any check fails)."""

    verdict: Literal["pass", "suspect"]
    reason: str = field(metadata=doc("one line: why suspect (empty on pass)"))
    family: str = field(metadata=doc("the transforms, in words"))
    copies: int
    shift_px: int
    seed_commitment: str = field(metadata=doc("sha256 of the audit secret (never the secret itself)"))
    organiser_secret: bool = field(metadata=doc("drawn from the organiser's secret (re-checkable by edl verify) "
                                                "rather than a one-off random one"))
    correct: list[int] = field(metadata=doc("correct answers on each copy"))
    accuracy: float = field(metadata=doc("mean accuracy over the copies"))
    drop_points: float = field(metadata=doc("test-set accuracy minus audit accuracy, in percentage points"))
    tolerance_points: float
    private: PrivateCheck | None = None
    provider: str = field(default="", metadata=doc("where the audit ran: the scoring's provider"))
    seconds: float | None = field(default=None, metadata=doc("wall time the audit added to the scoring"))
    checks: list[AuditCheck] = field(default_factory=list, metadata=doc(
        "every named check (copies, batch independence, training probe, private images); the verdict is suspect "
        "when any fails. Empty in results written before checks were named"))
    secret_order: bool = field(default=False, metadata=doc("every audit set reached the model in an order drawn "
                                                           "from the secret"))
    batch: BatchIndependence | None = None
    training: TrainingProbe | None = None
