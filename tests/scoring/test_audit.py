"""The generalization audit: a lookup of the public test set is suspect, a generalizing model passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import (
    colour_images,
    colour_model,
    fast_config,
    memorizing_model,
    oracle_images,
    save_npz,
    smooth_images,
)

from evaluator.config import AuditConfig, Secrets
from evaluator.data.store import load_path
from evaluator.scoring.audit import audit_copies, commitment, verdict
from evaluator.scoring.pipeline import score
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
    from evaluator.report.audit_record import PrivateCheck

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


# --- named checks: each memoriser class caught by at least one, honest models by none -------------------------


def _with_training(config, train):
    return dataclasses.replace(config, audit=dataclasses.replace(config.audit, train_data=train))


def _checks(result) -> dict[str, str]:
    return {check.name: check.verdict for check in result.audit.checks}


@pytest.fixture(scope="module")
def random_sets(tmp_path_factory):
    """Unrelated smooth images with random labels: a test set and a training set, nothing to generalize from."""
    folder = tmp_path_factory.mktemp("random_sets")
    test_images, test_labels = smooth_images(1000, seed=1)
    train_images, train_labels = smooth_images(1000, seed=2)
    return (save_npz(folder / "test.npz", test_images, test_labels),
            save_npz(folder / "train.npz", train_images, train_labels),
            (test_images, test_labels), (train_images, train_labels))


def test_every_audit_set_reaches_the_model_in_a_secret_order_and_comes_back_in_its_own():
    from evaluator.scoring.audit import in_secret_order

    seen = []

    def predict(images):
        seen.append(images[:, 0, 0, 0].copy())
        return images[:, 0, 0, 0].astype(np.int64)

    images = np.zeros((500, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(500) % 250
    predictions = in_secret_order(predict, SECRET, "f" * 64, "copy0")(images)
    assert predictions.tolist() == images[:, 0, 0, 0].tolist()  # back in the set's own order
    assert not np.array_equal(seen[0], images[:, 0, 0, 0])  # ... but not how the model saw them
    in_secret_order(predict, SECRET, "f" * 64, "copy0")(images)
    in_secret_order(predict, SECRET + "x", "f" * 64, "copy0")(images)
    assert np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[0], seen[2])  # drawn from the secret


def test_a_batch_recogniser_passes_ordered_copies_but_fails_secret_order_and_batch_independence(tmp_path,
                                                                                             random_sets):
    from memorisers import batch_recogniser

    from evaluator.scoring.audit import audit_copies

    _, _, (images, labels), _ = random_sets
    images = (images // 2 + 40 * (np.arange(1000) // 250)[:, None, None, None]).astype(np.uint8)  # batches differ
    test = save_npz(tmp_path / "batches.npz", images, labels)
    model = batch_recogniser(tmp_path / "a.onnx", images, labels)
    dataset = load_path(test)
    ordered = next(audit_copies(dataset, SECRET, AuditConfig()))  # the copies in the test set's order, as before
    session = __import__("onnxruntime").InferenceSession(str(model), providers=["CPUExecutionProvider"])
    before = np.concatenate([session.run(None, {"pixels": ordered[i : i + 250]})[0] for i in range(0, 1000, 250)])
    assert np.mean(before == labels) == 1.0  # what let it pass the old audit
    result = score(model, fast_config(test, passes=1), tmp_path / "o", secrets=Secrets(audit_secret=SECRET))
    checks = _checks(result)
    assert result.accuracy == 1.0 and result.audit.verdict == "suspect" and result.audit.secret_order
    assert checks["copies"] == "fail" and checks["batch_independence"] == "fail"
    assert result.audit.batch.batch_sizes == [250] and result.audit.batch.changed > 500
    assert "the graph reads its batchmates" in result.audit.reason


def test_a_flip_invariant_neighbour_passes_the_copies_and_fails_the_training_probe(tmp_path, random_sets):
    from memorisers import flip_invariant_neighbour

    test, train, (images, labels), _ = random_sets
    model = flip_invariant_neighbour(tmp_path / "b.onnx", images, labels)
    result = score(model, _with_training(fast_config(test, passes=1), train), tmp_path / "o",
                   secrets=Secrets(audit_secret=SECRET))
    checks = _checks(result)
    assert result.accuracy == 1.0 and checks["copies"] == "pass" and checks["batch_independence"] == "pass"
    assert checks["training_probe"] == "fail" and result.audit.verdict == "suspect"
    assert result.audit.training.images == 1000 and result.audit.training.accuracy < 0.3
    assert "the test set's answers are stored, not learned" in result.audit.reason


def test_a_neighbour_over_test_and_training_images_fails_on_the_training_images_it_did_not_store(tmp_path,
                                                                                               random_sets):
    from memorisers import flip_invariant_neighbour

    test, train, (images, labels), (train_images, train_labels) = random_sets
    model = flip_invariant_neighbour(tmp_path / "c.onnx", images, labels, (train_images[:500], train_labels[:500]))
    result = score(model, _with_training(fast_config(test, passes=1), train), tmp_path / "o",
                   secrets=Secrets(audit_secret=SECRET))
    assert result.accuracy == 1.0 and _checks(result)["training_probe"] == "fail"
    assert 0.4 < result.audit.training.accuracy < 0.7  # the stored half right, the rest chance


def test_an_honest_model_passes_every_check_that_runs(tmp_path, data):
    images, labels = colour_images(600, correct=600, seed=5)
    train = save_npz(tmp_path / "train.npz", images, labels)
    result = score(colour_model(tmp_path / "m.onnx"), _with_training(fast_config(data, passes=1), train),
                   tmp_path / "o", secrets=Secrets(audit_secret=SECRET))
    assert _checks(result) == {"copies": "pass", "batch_independence": "pass", "training_probe": "pass",
                               "private_images": "not_run", "graph_inspection": "pass"}
    assert result.audit.batch.batch_sizes == [250, 126] and result.audit.batch.changed == 0
    assert result.audit.training.images == 600 and result.audit.verdict == "pass"
    checks = {c.name: c for c in verify_result(tmp_path / "o", VerifyOptions(audit_secret=SECRET))}
    for name in ("audit copies re-derived and classified again", "audit check batch_independence re-derived",
                 "audit check training_probe re-derived"):
        assert checks[name].outcome == "pass", checks[name].detail


def test_without_training_images_the_probe_is_not_run_and_the_result_says_why(tmp_path, data):
    result = score(colour_model(tmp_path / "m.onnx"), fast_config(data, passes=1), tmp_path / "o")
    probe = next(check for check in result.audit.checks if check.name == "training_probe")
    assert probe.verdict == "not_run" and probe.figure is None and "holds no training images" in probe.evidence
    assert "--train-data" in probe.evidence and result.audit.verdict == "pass"
    assert any(w.startswith("generalization audit: training_probe not run: ") for w in result.warnings)


def test_verify_rejects_an_edited_check_verdict(tmp_path, data):
    from evaluator.report.integrity import seal
    from evaluator.report.reader import read_result
    from evaluator.report.result import write_result

    score(colour_model(tmp_path / "m.onnx"), fast_config(data, passes=1), tmp_path / "o")
    path = tmp_path / "o" / "result.json"
    result = read_result(path)
    result.audit.checks[0].figure = 50.0  # a drop of 50 points recorded as a pass, and sealed again
    write_result(path, seal(result))
    outcomes = {c.name: c.outcome for c in verify_result(path)}
    assert outcomes["audit check copies: verdict follows from figure and threshold"] == "fail"


def _batch_size_reader(path):
    """``colour_model``, except that at any batch size but 250 class 0 wins: a graph that reads its batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(colour_model(path))
    graph = model.graph
    graph.node[-1].output[0] = "clean_scores"
    graph.node.extend([
        helper.make_node("Shape", ["pixels"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"]),
        helper.make_node("Cast", ["batch"], ["batch_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["batch_float", "expected"], ["off"]),
        helper.make_node("Abs", ["off"], ["distance"]),
        helper.make_node("Mul", ["distance", "class_zero"], ["bonus"]),
        helper.make_node("Add", ["clean_scores", "bonus"], ["scores"]),
    ])
    graph.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "zero"),
                              numpy_helper.from_array(np.array(250.0, np.float32), "expected"),
                              numpy_helper.from_array(np.eye(10, dtype=np.float32)[0] * 100, "class_zero")])
    onnx.save(model, path)
    return path


def test_a_graph_that_reads_its_batch_size_fails_batch_independence(tmp_path, data):
    result = score(_batch_size_reader(tmp_path / "reader.onnx"), fast_config(data, passes=1), tmp_path / "o")
    assert result.accuracy == 0.96 and _checks(result)["copies"] == "pass"  # at its own batch size, honest
    assert _checks(result)["batch_independence"] == "fail" and result.audit.batch.batch_sizes == [250, 126]
    assert result.audit.batch.changed_pct > 50 and result.audit.verdict == "suspect"


def test_a_result_from_before_named_checks_still_verifies(tmp_path, data):
    """Its copies ran in the test set's order; verify redraws them so, and judges by the copies alone."""
    from evaluator.report.integrity import seal
    from evaluator.report.reader import read_result
    from evaluator.report.result import write_result

    score(colour_model(tmp_path / "m.onnx"), fast_config(data, passes=1), tmp_path / "o",
          secrets=Secrets(audit_secret=SECRET))
    path = tmp_path / "o" / "result.json"
    old = read_result(path)
    old.audit = dataclasses.replace(old.audit, checks=[], secret_order=False, batch=None, training=None)
    write_result(path, seal(old))
    outcomes = {c.name: c.outcome for c in verify_result(path, VerifyOptions(audit_secret=SECRET))}
    assert outcomes["audit verdict follows from its figures"] == "pass"
    assert outcomes["audit copies re-derived and classified again"] == "pass"
    assert not any(name.startswith("audit check") for name in outcomes)


def test_every_memoriser_class_fails_the_graph_inspection_check_and_verify_agrees(tmp_path, random_sets):
    """The static look inside the graph is a named check too: each memoriser class shows a strong finding."""
    from memorisers import batch_recogniser, flip_invariant_neighbour

    test, train, (images, labels), (train_images, train_labels) = random_sets
    models = {"batch": batch_recogniser(tmp_path / "a.onnx", images, labels),
              "neighbour": flip_invariant_neighbour(tmp_path / "b.onnx", images, labels),
              "neighbour+train": flip_invariant_neighbour(tmp_path / "c.onnx", images, labels,
                                                          (train_images[:500], train_labels[:500]))}
    for name, model in models.items():
        out = tmp_path / name
        result = score(model, _with_training(fast_config(test, passes=1), train), out,
                       secrets=Secrets(audit_secret=SECRET))
        graph = next(check for check in result.audit.checks if check.name == "graph_inspection")
        assert graph.verdict == "fail" and graph.figure >= 1, (name, graph)
        assert result.audit.verdict == "suspect"
        checks = {c.name: c for c in verify_result(out, VerifyOptions())}
        assert checks["audit check graph_inspection: figure = strong findings in model.evidence"].outcome == "pass"
