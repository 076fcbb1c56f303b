"""The test set resident on the device, bound once; passes over it, and other images through the same buffers."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from builders import oracle_images, oracle_model
from onnx import numpy_helper

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.errors import SubmissionError
from evaluator.runtime.runner import BoundRunner, make_batches, prime_runner
from evaluator.runtime.session import (
    CAPTURE_FAILED,
    FailedAttempt,
    GraphCaptureError,
    SessionAttempt,
    create_session,
    open_attempts,
)

CPU = RuntimeConfig(provider="cpu")


def _runner(model, images, batch, static=False, count=None):
    contract = check_submission(model).contract
    batches, padding = make_batches(images, contract, batch)
    session, info = create_session(model, CPU)
    return BoundRunner(session, contract, batches, info, 0, count or len(images), static_outputs=static), padding


def test_a_fixed_batch_pads_the_last_batch_and_drops_its_predictions(tmp_path):
    images, labels = oracle_images(700, correct=640)
    runner, padding = _runner(oracle_model(tmp_path / "m.onnx", "uint8", "NHWC", batch=300), images, 300)
    assert padding == 200 and runner.capacity == 900
    predictions = runner.run_pass()
    assert predictions.shape == (700,) and int((predictions == labels).sum()) == 640


@pytest.mark.parametrize(("output", "label_dtype"), [("scores", "int64"), ("labels", "int64"), ("labels", "uint32"),
                                                    ("labels", "uint16"), ("labels", "uint64"), ("labels", "int8")])
def test_preallocated_outputs_give_the_same_predictions(tmp_path, output, label_dtype):
    """The binding CUDA graphs need (fixed output buffers), exercised on the CPU, for every label type edl check
    accepts."""
    model = oracle_model(tmp_path / "m.onnx", "uint8", "NHWC", output, label_dtype=label_dtype)
    images, labels = oracle_images(700, correct=650)
    dynamic, _ = _runner(model, images, 300)
    static, _ = _runner(model, images, 300, static=True)
    first, second = static.run_pass(), static.run_pass()
    np.testing.assert_array_equal(dynamic.run_pass(), first)
    np.testing.assert_array_equal(first, second)
    assert int((first == labels).sum()) == 650


@pytest.mark.parametrize(("dtype", "layout", "batch"), [("float32", "NCHW", "N"), ("uint8", "NHWC", 250),
                                                        ("float16", "NCHW", "N")])
def test_predict_runs_other_images_through_the_same_buffers_then_restores_the_test_set(tmp_path, dtype, layout, batch):
    model = oracle_model(tmp_path / "m.onnx", dtype, layout, batch=batch)
    images, labels = oracle_images(600, correct=600, seed=1)
    runner, _ = _runner(model, images, 250, static=True)
    other, other_labels = oracle_images(1700, correct=1500, seed=2)  # more than one pass's worth: chunks
    predictions = runner.predict(other)
    assert predictions.shape == (1700,) and int((predictions == other_labels).sum()) == 1500
    assert int((runner.run_pass() == labels).sum()) == 600  # the test set is back in place
    assert runner.predict(other[:5]).tolist() == predictions[:5].tolist()


def test_prime_runner_opens_primes_and_records_the_attempt_that_runs(tmp_path):
    good = oracle_model(tmp_path / "m.onnx")
    contract = check_submission(good).contract
    images, labels = oracle_images(500, correct=480)
    batches, _ = make_batches(images, contract, 250)
    runner = prime_runner(good, contract, batches, CPU, 500)
    assert runner.info.attempt == "cpu" and runner.info.failed == () and runner.info.selection == "requested"
    assert int((runner.run_pass() == labels).sum()) == 480

    model = onnx.load(good)  # a Reshape that fails when run: without graphs, no other attempt answers it
    model.graph.initializer[3].CopyFrom(numpy_helper.from_array(np.array([7, -1], np.int64), "shape"))
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(SubmissionError, match="onnxruntime failed while running the model"):
        prime_runner(tmp_path / "bad.onnx", contract, batches, CPU, 500)


def test_a_graph_capture_that_fails_is_retried_without_graphs_and_said_so(tmp_path):
    """CUDA's two attempts as the CPU can play them: the first primes three runs per graph id and its capture
    fails; the next attempt, without graphs, runs, and the record says why."""
    good = oracle_model(tmp_path / "m.onnx")
    contract = check_submission(good).contract
    images, labels = oracle_images(500, correct=480)
    batches, _ = make_batches(images, contract, 250)
    attempts = [SessionAttempt("with graphs", "cpu", CPU, "requested"),
                SessionAttempt("without graphs", "cpu", CPU, "requested", frozenset({CAPTURE_FAILED}))]

    def prime(session, info):
        runner = BoundRunner(session, contract, batches, dataclasses.replace(info, cuda_graph=True), 0, 500)
        runner.prime()
        if info.attempt == "with graphs":
            raise GraphCaptureError(["a kernel allocated during capture"])
        return runner

    runner, info = open_attempts(good, attempts, prime=prime)
    assert info.attempt == "without graphs" and int((runner.run_pass() == labels).sum()) == 480
    assert info.selection == ("requested; CUDA graph capture failed (a kernel allocated during capture), run without "
                              "graphs")
    assert info.failed == (FailedAttempt("with graphs", CAPTURE_FAILED, "a kernel allocated during capture"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.selection = "edited"  # one record, made once: nothing patches it after

    with pytest.raises(SubmissionError, match="a kernel allocated during capture"):  # nothing answers: the error
        open_attempts(good, attempts[:1], prime=prime)
