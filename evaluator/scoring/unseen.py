"""What an honest model is expected to score on images drawn anew, and how far below that is suspicious.

A network trained on the public test set, or a graph that stores it, scores far better on the test
set than on images no team has seen. Honest models lose too, and more at lower accuracy: CIFAR-10.1
v6 (Recht et al., "Do CIFAR-10 Classifiers Generalize to CIFAR-10?", 2018: 2,000 images collected
the way CIFAR-10's were) costs 30 published models 4 to 14 points. Following Recht et al., the
expectation is a straight line in probit-scaled accuracy,

    probit(unseen) = INTERCEPT + SLOPE * probit(test),

fitted by least squares to those 30 models (accuracy on the official test images 0-999 and on
CIFAR-10.1 v6). The probit scale keeps the line inside (0, 1) when it is extrapolated towards 100 %,
where a straight line in accuracy would promise a gap that never closes. ``bench/unseen_fit.py``
recomputes the constants below from the calibration data and prints every model's residual; a test
checks that they equal the fit.

The tolerance is ``z`` standard deviations of the combined error of one check, in points:

- the fit's spread: its residual standard deviation plus the line's own uncertainty at this test
  accuracy (larger far from the calibrated 82-97.5 %), converted from probit units to points at the
  expected accuracy. It is not reduced by the calibration's own sampling noise: the 30 models share
  the same 1,000 and 2,000 images, so their errors are correlated and independent binomial terms
  would exceed the whole residual (a conservative choice);
- the binomial standard error of the unseen set's size, at the expected accuracy;
- the binomial standard error of the test accuracy itself (``test_images`` images), carried through
  the line's slope.

A check fails when the unseen accuracy is below the expected one by more than the tolerance.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from evaluator.errors import DataError

FIT_NAME = ("probit-linear, CIFAR-10 test images 0-999 vs CIFAR-10.1 v6, 30 published models "
            "(Recht et al. 2018)")
OFFICIAL_TEST_IMAGES = 10_000
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Fit:
    """A least-squares line in probit-scaled accuracy, with what its prediction interval needs."""

    intercept: float
    slope: float
    residual_sd: float  # in probit units, n - 2 degrees of freedom
    models: int
    mean_probit_test: float
    spread_probit_test: float  # sum of squared deviations of probit(test) from its mean

    def residuals(self, test: np.ndarray, unseen: np.ndarray) -> np.ndarray:
        """Each model's unseen accuracy minus the line's, in points."""
        predicted = np.array([_NORMAL.cdf(self.intercept + self.slope * _NORMAL.inv_cdf(t)) for t in test])
        return (np.asarray(unseen) - predicted) * 100


# Recomputed by bench/unseen_fit.py from ../shared/calibration/cifar10.1-v6 (checked by a test).
SHIPPED = Fit(intercept=-0.340462, slope=0.926343, residual_sd=0.047589, models=30,
              mean_probit_test=1.546771, spread_probit_test=2.800008)


def fit(test: np.ndarray, unseen: np.ndarray) -> Fit:
    """The line through (probit(test), probit(unseen)) of the calibration models."""
    x = np.array([_NORMAL.inv_cdf(float(t)) for t in test])
    y = np.array([_NORMAL.inv_cdf(float(u)) for u in unseen])
    if x.size < 3:
        raise DataError(f"a fit needs at least 3 models, got {x.size}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    return Fit(float(intercept), float(slope), float(math.sqrt(float(residual @ residual) / (x.size - 2))),
               int(x.size), float(x.mean()), float(((x - x.mean()) ** 2).sum()))


def calibration(folder: Path, test_labels: np.ndarray) -> list[tuple[str, float, float]]:
    """(model, test accuracy, unseen accuracy) recomputed from ``folder``'s predictions and labels.

    ``folder`` holds ``predictions/<model>.npz`` (``cifar10_test``, ``cifar10_1_v6``),
    ``cifar10.1_v6_labels.npy`` and ``pairs.tsv``; ``test_labels`` are the official test labels
    the test accuracy is taken over (the first ``len(test_labels)`` images). The recomputed
    accuracies must agree with ``pairs.tsv``.
    """
    unseen_labels = np.load(folder / "cifar10.1_v6_labels.npy", allow_pickle=False)
    with (folder / "pairs.tsv").open() as handle:
        published = {row["model"]: (float(row["cifar10_test_first1000_acc"]), float(row["cifar10_1_v6_acc"]))
                     for row in csv.DictReader(handle, delimiter="\t")}
    found = []
    for path in sorted((folder / "predictions").glob("*.npz")):
        with np.load(path, allow_pickle=False) as predictions:
            test = float(np.mean(predictions["cifar10_test"][: test_labels.size] == test_labels))
            unseen = float(np.mean(predictions["cifar10_1_v6"] == unseen_labels))
        if path.stem in published and not np.allclose(published[path.stem], (test, unseen), atol=1e-9):
            raise DataError(f"{path}: recomputed accuracies {test}, {unseen} differ from pairs.tsv's "
                            f"{published[path.stem]}")
        found.append((path.stem, test, unseen))
    return found


@dataclass(frozen=True)
class Expectation:
    """The expected unseen accuracy for one check, and the parts of its tolerance (points)."""

    expected: float
    fit_sd_points: float
    test_sd_points: float
    private_sd_points: float

    @property
    def combined_sd_points(self) -> float:
        return math.hypot(self.fit_sd_points, self.test_sd_points, self.private_sd_points)


def expect(test_accuracy: float, test_images: int, unseen_images: int, line: Fit = SHIPPED) -> Expectation:
    """The unseen accuracy an honest model of ``test_accuracy`` (on ``test_images``) should reach.

    A test accuracy of 0 or 100 % is taken as half an image away from it, where its probit is finite.
    """
    edge = 0.5 / test_images
    test = min(max(test_accuracy, edge), 1 - edge)
    x = _NORMAL.inv_cdf(test)
    mean = line.intercept + line.slope * x
    expected = _NORMAL.cdf(mean)
    density = _NORMAL.pdf(mean)
    prediction_sd = line.residual_sd * math.sqrt(1 + 1 / line.models
                                                 + (x - line.mean_probit_test) ** 2 / line.spread_probit_test)
    slope_in_accuracy = line.slope * density / _NORMAL.pdf(x)
    return Expectation(expected=expected, fit_sd_points=100 * density * prediction_sd,
                       test_sd_points=100 * slope_in_accuracy * math.sqrt(test * (1 - test) / test_images),
                       private_sd_points=100 * math.sqrt(expected * (1 - expected) / unseen_images))
