"""Unseen images decide: the expected accuracy from the fit, the tolerance from its spread and both sets' sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import SHARED

from evaluator.config import AuditConfig
from evaluator.data.dataset import Dataset
from evaluator.report.audit_record import PrivateCheck
from evaluator.scoring.audit import _private, verdict
from evaluator.scoring.unseen import FIT_NAME, SHIPPED, calibration, expect, fit

CALIBRATION = SHARED / "calibration" / "cifar10.1-v6"
TEST_LABELS = SHARED / "data" / "cifar10-test-first1000.npz"


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, float, float]]:
    if not CALIBRATION.is_dir() or not TEST_LABELS.is_file():
        pytest.skip(f"calibration data absent ({CALIBRATION}): ../shared is only on project machines")
    with np.load(TEST_LABELS, allow_pickle=False) as archive:
        return calibration(CALIBRATION, archive["y"])


def _check(test_accuracy: float, unseen_accuracy: float, test_images: int, unseen_images: int = 2000,
           config: AuditConfig | None = None) -> tuple[PrivateCheck, str, str]:
    """The real check: a 'model' that is right on exactly ``unseen_accuracy`` of ``unseen_images`` images."""
    labels = (np.arange(unseen_images) % 10).astype(np.uint8)
    right = round(unseen_accuracy * unseen_images)
    answers = labels.copy()
    answers[right:] = (answers[right:] + 1) % 10
    images = np.zeros((unseen_images, 32, 32, 3), np.uint8)
    private = Dataset(images, labels, "unseen", "f" * 64, False)
    config = config or AuditConfig()
    checked = _private(lambda _: answers, private, test_accuracy, config, test_images)
    outcome, reason = verdict(test_accuracy, test_accuracy, checked, config)
    return checked, outcome, reason


def test_the_shipped_constants_are_the_fit_of_the_thirty_models(pairs):
    assert len(pairs) == 30
    refit = fit(np.array([p[1] for p in pairs]), np.array([p[2] for p in pairs]))
    for name in ("intercept", "slope", "residual_sd", "mean_probit_test", "spread_probit_test"):
        assert getattr(SHIPPED, name) == pytest.approx(getattr(refit, name), abs=5e-7), name
    assert SHIPPED.models == refit.models == 30


def test_no_published_model_is_flagged_on_its_own_pair(pairs):
    margins = {}
    for name, test, unseen in pairs:
        checked, outcome, reason = _check(test, unseen, test_images=1000)
        assert outcome == "pass", (name, reason)
        margins[name] = checked.allowed_shortfall_points - checked.shortfall_points
    closest = min(margins, key=margins.__getitem__)
    print(f"closest honest model: {closest}, {margins[closest]:.2f} points above the failing line")
    assert margins[closest] > 2.0  # measured: wide_resnet_tf, 3.19 points (bench/unseen_fit.py)


@pytest.mark.parametrize(("what", "test", "unseen"), [
    ("a lookup of the test set: chance on unseen images", 1.0, 0.10),
    ("a flip-invariant nearest neighbour of the test set", 1.0, 0.27),
    ("a network trained on the test set", 1.0, 0.85),
    ("one that passed the old fixed 10-point gap", 1.0, 0.92),
    ("a network trained on the test set, less well", 0.96, 0.85),
])
@pytest.mark.parametrize("test_images", [1000, 10_000])
def test_memorisers_and_networks_trained_on_the_test_set_are_flagged(what, test, unseen, test_images):
    checked, outcome, reason = _check(test, unseen, test_images)
    assert outcome == "suspect", what
    assert f"on 2000 unseen images, where an honest model is expected to score {checked.expected_accuracy:.1%}" \
        in reason and "trained on the test set, or memorised it" in reason and "\n" not in reason


def test_the_record_carries_the_expectation_and_the_tolerance_parts():
    checked, outcome, _ = _check(0.95, 0.88, test_images=10_000)
    expectation = expect(0.95, 10_000, 2000)
    assert outcome == "pass" and checked.fit == FIT_NAME and checked.test_images == 10_000
    assert checked.expected_accuracy == pytest.approx(0.8816, abs=1e-4) == expectation.expected
    parts = (checked.fit_sd_points, checked.test_sd_points, checked.private_sd_points)
    assert checked.combined_sd_points == pytest.approx(float(np.hypot.reduce(parts)))
    assert checked.tolerance_sd == 3.0
    assert checked.allowed_shortfall_points == pytest.approx(3 * checked.combined_sd_points)
    # The old reading holds: the largest test-minus-private gap that passes.
    assert checked.tolerance_points == pytest.approx((0.95 - checked.expected_accuracy) * 100
                                                     + checked.allowed_shortfall_points)
    assert checked.shortfall_points == pytest.approx((checked.expected_accuracy - 0.88) * 100)


def test_smaller_sets_widen_the_tolerance():
    small, _, _ = _check(0.95, 0.88, test_images=1000, unseen_images=500)
    large, _, _ = _check(0.95, 0.88, test_images=10_000, unseen_images=2000)
    assert small.private_sd_points > 1.9 * large.private_sd_points
    assert small.test_sd_points > 3 * large.test_sd_points
    assert small.allowed_shortfall_points > large.allowed_shortfall_points


def test_the_organiser_can_give_the_tolerance_in_points_or_in_standard_deviations():
    points = AuditConfig(private_tolerance_points=10.0)
    checked, outcome, reason = _check(1.0, 0.92, 10_000, config=points)
    assert checked.allowed_shortfall_points == 10.0 and checked.tolerance_sd is None and outcome == "pass"
    checked, outcome, reason = _check(1.0, 0.85, 10_000, config=points)
    assert outcome == "suspect" and "tolerance 10.00 = set by the organiser" in reason
    wide = AuditConfig(private_tolerance_sd=30.0)
    assert _check(0.95, 0.80, 10_000, config=wide)[1] == "pass"
    assert _check(0.95, 0.80, 10_000)[1] == "suspect"


def test_a_result_made_before_the_fit_keeps_its_fixed_gap_rule():
    old = PrivateCheck("f" * 64, 100, 80, 0.80, 15.0, 10.0)
    outcome, reason = verdict(0.95, 0.95, old, AuditConfig())
    assert outcome == "suspect" and "(a gap of 15.0 points, tolerance 10)" in reason
    assert verdict(0.95, 0.95, dataclasses.replace(old, gap_points=8.0), AuditConfig())[0] == "pass"


def test_the_expectation_stays_inside_zero_and_one_and_rises_with_the_test_accuracy():
    expected = [expect(t, 10_000, 2000).expected for t in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)]
    assert all(0 < e < 1 for e in expected) and expected == sorted(expected)


def test_a_real_lookup_scored_with_a_npy_pair_is_caught_by_the_unseen_images(tmp_path):
    """A six-operator lookup of the test set, scored end to end with unseen images given as a .npy pair."""
    from builders import fast_config, memorizing_model, oracle_images, save_npz

    from evaluator.scoring.pipeline import score

    images, labels = oracle_images(1000, correct=1000)
    unseen_images, unseen_labels = oracle_images(500, correct=500, seed=5)
    pair = tmp_path / "pair"
    pair.mkdir()
    np.save(pair / "held_back_data.npy", unseen_images, allow_pickle=False)
    np.save(pair / "held_back_labels.npy", unseen_labels.astype(np.int32), allow_pickle=False)
    config = fast_config(save_npz(tmp_path / "d.npz", images, labels), passes=1)
    config = dataclasses.replace(config, audit=dataclasses.replace(config.audit, private_data=pair))
    result = score(memorizing_model(tmp_path / "lookup.onnx", images, labels), config, tmp_path / "o")
    private = result.audit.private
    assert result.accuracy == 1.0 and private.images == 500 and private.test_images == 1000
    assert private.accuracy < 0.2 and private.expected_accuracy > 0.99
    assert private.shortfall_points > private.allowed_shortfall_points and result.audit.verdict == "suspect"
    assert "on 500 unseen images, where an honest model is expected to score" in result.audit.reason
