"""Recompute the expected accuracy on unseen images from the 30 published models, and print each one's residual.

Reads ``../shared/calibration/cifar10.1-v6`` (predictions of 30 models on the official test set and
on CIFAR-10.1 v6, and the v6 labels) and the official test labels of images 0-999
(``../shared/data/cifar10-test-first1000.npz``), recomputes every model's pair of accuracies (and
checks it against ``pairs.tsv``), fits the probit line of ``evaluator.scoring.unseen`` and prints:
the fit beside the shipped constants, each model's residual and its margin under the tolerance rule
when its own pair (1,000 test images, 2,000 unseen) is checked, a straight line in accuracy for
comparison, and a leave-one-out check (each model checked against the line fitted to the other 29).

    python bench/unseen_fit.py [--z 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.scoring.unseen import SHIPPED, Fit, calibration, expect, fit  # noqa: E402

SHARED = ROOT.parent / "shared"
CALIBRATION = SHARED / "calibration" / "cifar10.1-v6"
TEST_LABELS = SHARED / "data" / "cifar10-test-first1000.npz"
UNSEEN_IMAGES = 2000


def margins(line: Fit, pairs: list[tuple[str, float, float]], z: float, test_images: int) -> list[float]:
    """How far above the failing line each model's unseen accuracy lies (points); negative: flagged."""
    out = []
    for _, test, unseen in pairs:
        expectation = expect(test, test_images, UNSEEN_IMAGES, line)
        out.append((unseen - expectation.expected) * 100 + z * expectation.combined_sd_points)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=float, default=3.0, help="standard deviations of the tolerance")
    args = parser.parse_args()
    if not CALIBRATION.is_dir() or not TEST_LABELS.is_file():
        sys.exit(f"{CALIBRATION} or {TEST_LABELS} absent: ../shared is only on project machines")
    with np.load(TEST_LABELS, allow_pickle=False) as archive:
        labels = archive["y"]
    pairs = calibration(CALIBRATION, labels)
    test = np.array([p[1] for p in pairs])
    unseen = np.array([p[2] for p in pairs])
    line = fit(test, unseen)
    rounded = Fit(*(round(v, 6) if isinstance(v, float) else v for v in dataclasses.astuple(line)))
    print(f"fit over {line.models} models: probit(unseen) = {line.intercept:.6f} + {line.slope:.6f} * probit(test), "
          f"residual sd {line.residual_sd:.6f} probit")
    print(f"shipped: {SHIPPED}")
    print(f"refit:   {rounded}  ({'equal' if rounded == SHIPPED else 'DIFFERENT: update evaluator/scoring/unseen.py'})")
    residuals = line.residuals(test, unseen)
    print(f"residuals in points: sd {residuals.std(ddof=2):.3f}, from {residuals.min():+.2f} to {residuals.max():+.2f}")
    slope, intercept = np.polyfit(test, unseen, 1)
    straight = (unseen - (intercept + slope * test)) * 100
    print(f"for comparison, a straight line in accuracy: unseen = {intercept:.4f} + {slope:.4f} * test, "
          f"residual sd {straight.std(ddof=2):.3f} points (it predicts {intercept + slope:.1%} at 100 %)")
    own = margins(line, pairs, args.z, 1000)
    print(f"\nz = {args.z:g}; each model's own pair (test 1,000 images, unseen {UNSEEN_IMAGES}):")
    print(f"{'model':<36}{'test':>7}{'unseen':>8}{'expected':>9}{'resid':>7}{'sd':>6}{'resid/sd':>9}{'margin':>8}")
    for (name, t, u), residual, margin in zip(pairs, residuals, own, strict=True):
        sd = expect(t, 1000, UNSEEN_IMAGES, line).combined_sd_points
        print(f"{name:<36}{t:>7.1%}{u:>8.2%}{expect(t, 1000, UNSEEN_IMAGES, line).expected:>9.2%}{residual:>+7.2f}"
              f"{sd:>6.2f}{residual / sd:>+9.2f}{margin:>+8.2f}")
    closest = int(np.argmin(own))
    print(f"flagged: {sum(m < 0 for m in own)}; closest honest model: {pairs[closest][0]}, margin {own[closest]:.2f} "
          "points above the failing line")
    left_out = []
    for index in range(len(pairs)):
        rest = [p for i, p in enumerate(pairs) if i != index]
        line_without = fit(np.array([p[1] for p in rest]), np.array([p[2] for p in rest]))
        left_out += margins(line_without, [pairs[index]], args.z, 1000)
    worst = int(np.argmin(left_out))
    print(f"leave-one-out: flagged {sum(m < 0 for m in left_out)}; closest {pairs[worst][0]}, margin "
          f"{left_out[worst]:.2f} points")
    print("\nexpected unseen accuracy and tolerance for a check on 10,000 test images and 2,000 unseen ones:")
    for accuracy in (0.80, 0.90, 0.95, 0.97, 0.99, 0.995, 1.0):
        e = expect(accuracy, 10_000, UNSEEN_IMAGES, line)
        print(f"  test {accuracy:6.1%}: expected {e.expected:6.2%}, sd {e.combined_sd_points:.2f} (fit "
              f"{e.fit_sd_points:.2f}, test {e.test_sd_points:.2f}, unseen {e.private_sd_points:.2f}), fails below "
              f"{e.expected * 100 - args.z * e.combined_sd_points:.2f} %")


if __name__ == "__main__":
    main()
