"""The generalization audit: a lookup of the public test set is suspect, a generalizing model passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import colour_images, colour_model, fast_config, memorizing_model, oracle_images, save_npz

from evaluator.config import AuditConfig, Secrets
from evaluator.data.store import load_path
from evaluator.scoring.audit import audit_copies, commitment, verdict
from evaluator.scoring.score import score
from evaluator.scoring.verify import VerifyOptions, verify_result

SECRET = "organiser-secret-0123456789abcdef"


@pytest.fixture
def data(tmp_path):
    images, labels = colour_images(1000, correct=960)
    return save_npz(tmp_path / "d.npz", images, labels)


def test_the_secret_draws_the_copies_and_only_its_hash_is_recorded(data):
    dataset = load_path(data)
    config = AuditConfig()
    first = list(audit_copies(dataset, SECRET, config))
    assert len(first) == 2 and not np.array_equal(first[0], first[1])
    assert all(np.array_equal(a, b) for a, b in zip(first, audit_copies(dataset, SECRET, config), strict=True))
    other = next(audit_copies(dataset, SECRET + "x", config))
    assert not np.array_equal(first[0], other)
    assert len(commitment(SECRET)) == 64 and SECRET not in commitment(SECRET)
    assert commitment(SECRET) != commitment(SECRET + "x")


@pytest.mark.parametrize(("public", "audit", "private_gap", "expected"), [
    (0.95, 0.94, None, "pass"),
    (0.95, 0.919, None, "suspect"),  # a drop of 3.1 points: over the default 3
    (1.00, 0.11, None, "suspect"),
    (0.95, 0.95, 12.0, "suspect"),  # the private images: a gap over the default 10 points
    (0.95, 0.95, 8.0, "pass"),
])
def test_the_verdict(public, audit, private_gap, expected):
    from evaluator.report.result import PrivateCheck

    private = None if private_gap is None else PrivateCheck("f" * 64, 100, 0, public - private_gap / 100,
                                                            private_gap, 10.0)
    outcome, reason = verdict(public, audit, private, AuditConfig())
    assert outcome == expected and (reason == "") == (expected == "pass") and "\n" not in reason


def test_a_lookup_of_the_test_set_is_suspect_and_says_why(tmp_path):
    images, labels = oracle_images(1000, correct=1000)  # unrelated random images: nothing to generalize from
    data = save_npz(tmp_path / "random.npz", images, labels)
    lookup = memorizing_model(tmp_path / "lookup.onnx", images, labels)
    result = score(lookup, fast_config(data, passes=1), tmp_path / "o", secrets=Secrets(audit_secret=SECRET))
    assert result.accuracy == 1.0 and result.category == 0.99
    audit = result.audit
    assert audit.verdict == "suspect" and audit.accuracy < 0.3 and audit.drop_points > 70
    assert audit.reason.startswith("accuracy 100.0% on the test set but ") and "memorisation suspected" in audit.reason
    assert audit.seed_commitment == commitment(SECRET) and audit.organiser_secret and audit.provider == "cpu"
    assert any("generalization audit: suspect" in warning for warning in result.warnings)


def test_a_generalizing_model_passes(tmp_path, data):
    result = score(colour_model(tmp_path / "m.onnx"), fast_config(data, passes=1), tmp_path / "o")
    assert result.audit.verdict == "pass" and abs(result.audit.drop_points) < 1.0
    assert result.audit.correct == [960, 960] and not result.audit.organiser_secret


def test_private_data_enters_the_verdict(tmp_path, data):
    images, labels = colour_images(300, correct=30, seed=9)  # the model is right on 10 % of these
    private = save_npz(tmp_path / "private.npz", images, labels)
    config = fast_config(data, passes=1)
    config = dataclasses.replace(config, audit=dataclasses.replace(config.audit, private_data=private))
    result = score(colour_model(tmp_path / "m.onnx"), config, tmp_path / "o")
    assert result.audit.private.accuracy == pytest.approx(0.10) and result.audit.private.images == 300
    private = result.audit.private
    assert private.gap_points == pytest.approx(86.0) and private.test_images == 1000
    assert result.audit.verdict == "suspect" and "but 10.0% on 300 unseen images, where an honest model is expected " \
        f"to score {private.expected_accuracy:.1%}" in result.audit.reason


def test_the_audit_can_be_switched_off_and_the_result_says_so(tmp_path, data):
    config = fast_config(data, passes=1)
    config = dataclasses.replace(config, audit=dataclasses.replace(config.audit, audit_copies=0))
    result = score(colour_model(tmp_path / "m.onnx"), config, tmp_path / "o")
    assert result.audit is None and any("not ranked unless" in warning for warning in result.warnings)


def test_verify_redraws_the_audit_copies_with_the_secret(tmp_path, data):
    score(colour_model(tmp_path / "m.onnx"), fast_config(data, passes=1), tmp_path / "o",
          secrets=Secrets(audit_secret=SECRET))
    checks = {c.name: c for c in verify_result(tmp_path / "o", VerifyOptions(audit_secret=SECRET))}
    assert checks["audit secret matches the recorded commitment"].outcome == "pass"
    again = checks["audit copies re-derived and classified again"]
    assert again.outcome == "pass" and "recorded [960, 960], on the CPU now [960, 960]" in again.detail
    wrong = {c.name: c.outcome for c in verify_result(tmp_path / "o", VerifyOptions(audit_secret="guess"))}
    assert wrong["audit secret matches the recorded commitment"] == "fail"
    assert "audit copies re-derived and classified again" not in wrong
