"""`edl score` end to end on the CPU with real onnxruntime: every contract form, exact accuracy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from builders import oracle_images, oracle_model, save, save_npz
from onnx import TensorProto, helper

from evaluator.errors import ProviderError, SubmissionError
from evaluator.runtime import cuda_unavailable_reason
from evaluator.score import RESULT_NAME, ScoreOptions, score


@pytest.fixture
def dataset(tmp_path):
    images, labels = oracle_images(1000, correct=917)
    return save_npz(tmp_path / "set.npz", images, labels)


def _options(tmp_path, data, **overrides):
    defaults = dict(data=data, out_dir=tmp_path / "out", passes=2, idle_seconds=0, cooldown_seconds=0, plot=False)
    return ScoreOptions(**(defaults | overrides))


@pytest.mark.parametrize(
    ("dtype", "layout", "output", "batch", "batch_size", "padding", "batches"),
    [
        ("float32", "NCHW", "scores", "N", 1000, 0, 1),
        ("float16", "NHWC", "scores", "N", 300, 0, 4),  # dynamic batch: a last partial batch of 100
        ("uint8", "NHWC", "labels", 300, None, 200, 4),  # fixed batch: the last batch padded
        ("uint8", "NCHW", "scores", "N", 7, 0, 143),
        ("float32", "NHWC", "labels", 1000, None, 0, 1),
    ],
)
def test_exact_accuracy_in_every_form(tmp_path, dataset, dtype, layout, output, batch, batch_size, padding, batches):
    model = oracle_model(tmp_path / "m.onnx", dtype, layout, output, batch=batch)
    result = score(model, _options(tmp_path, dataset, batch_size=batch_size))
    assert result["correct"] == 917 and result["accuracy"] == pytest.approx(0.917)
    assert result["category"] == pytest.approx(0.90)
    assert result["padded_images"] == padding
    assert -(-(1000 + padding) // result["batch_size"]) == batches
    assert result["prediction_mismatch_passes"] == []
    on_disk = json.loads((tmp_path / "out" / RESULT_NAME).read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["schema_version"] == 1
    assert on_disk["provider"]["name"] == "cpu" and on_disk["provider"]["nodes_off_provider"] == []


def test_missing_meters_are_null_with_reasons_never_zero(tmp_path, dataset):
    result = score(oracle_model(tmp_path / "m.onnx"), _options(tmp_path, dataset))
    energy = result["energy"]
    assert energy["total_j"] is None and energy["gpu_j"] is None and energy["cpu_j"] is None
    assert "NVML cannot initialise" in energy["missing_domains"]["gpu"]
    assert "does not exist" in energy["missing_domains"]["cpu"]


def test_metadata_batch_size_is_used(tmp_path, dataset):
    result = score(oracle_model(tmp_path / "m.onnx", metadata_batch=128), _options(tmp_path, dataset, batch_size=999))
    assert (result["batch_size"], result["batch_size_rule"]) == (128, "metadata_props edl.batch_size")


def test_cuda_requested_but_unavailable_fails_loudly(tmp_path, dataset):
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here; the refusal path cannot be shown")
    with pytest.raises(ProviderError, match="--provider cuda was asked for"):
        score(oracle_model(tmp_path / "m.onnx"), _options(tmp_path, dataset, provider="cuda"))
    assert not (tmp_path / "out" / RESULT_NAME).exists()


def test_invalid_submission_is_refused_before_anything_runs(tmp_path, dataset):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    with pytest.raises(SubmissionError, match="empty"):
        score(bad, _options(tmp_path, dataset))


def test_runtime_output_shape_is_checked(tmp_path, dataset):
    """A model that declares (N, 10) but returns something else fails with the contract's words."""
    model = onnx.load(oracle_model(tmp_path / "m.onnx"))
    model.graph.initializer[3].CopyFrom(onnx.numpy_helper.from_array(np.array([-1, 5], np.int64), "shape"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "K"
    save(model, tmp_path / "lying.onnx")
    with pytest.raises(SubmissionError, match="contract needs"):
        score(tmp_path / "lying.onnx", _options(tmp_path, dataset))


def test_nondeterministic_model_reports_differing_passes(tmp_path, dataset):
    """Scores from RandomUniformLike: every pass predicts differently, and the result says so."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "a"], ["ten"]),
        helper.make_node("RandomUniformLike", ["ten"], ["y"]),
    ]
    inits = [onnx.numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("s", 0), ("e", 10), ("a", 1))]
    graph = helper.make_graph(nodes, "random", [x], [y], inits)
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "random.onnx")
    result = score(path, _options(tmp_path, dataset, passes=3))
    assert result["prediction_mismatch_passes"] == [1, 2]
    assert any("predicted differently" in w for w in result["warnings"])


def test_cli_json_is_the_only_stdout(tmp_path, dataset):
    model = oracle_model(tmp_path / "m.onnx", "uint8", "NHWC")
    run = subprocess.run(
        [sys.executable, "-m", "evaluator", "score", str(model), "--data", str(dataset), "--passes", "2",
         "--idle-seconds", "0", "--cooldown", "0", "--out", str(tmp_path / "o"), "--json"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["correct"] == 917
    assert (tmp_path / "o" / "samples.csv").is_file()


def test_cli_score_error_is_one_line_without_traceback(tmp_path, dataset):
    run = subprocess.run([sys.executable, "-m", "evaluator", "score", str(tmp_path / "missing.onnx"),
                          "--data", str(dataset)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "no such file" in run.stderr and "Traceback" not in run.stderr


def test_real_subset_with_oracle_labels(tmp_path, shared_data):
    """Real CIFAR-10 pixels through the pipeline: the fingerprint is stable and the count exact."""
    with np.load(shared_data) as archive:
        images, labels = archive["x"].copy(), archive["y"]
    images[:, 0, :10, 0] = 0
    images[np.arange(1000), 0, labels, 0] = 255
    path = save_npz(tmp_path / "marked.npz", images, labels)
    result = score(oracle_model(tmp_path / "m.onnx", "uint8", "NHWC"), _options(tmp_path, path))
    assert result["correct"] == 1000 and result["category"] == pytest.approx(0.99)
