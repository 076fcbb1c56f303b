"""Every shipped sample and every shared pretrained ResNet passes every audit check on real images; the memorisers
of tests/memorisers.py, built over the real images, are each caught by a named check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from builders import fast_config
from memorisers import batch_recogniser, flip_invariant_neighbour

from evaluator.scoring.pipeline import score

ROOT = Path(__file__).parents[2]
SAMPLES = ["small_cnn.onnx", "resnet20.onnx", "resnet20.fp16.onnx"]
RESNETS = ["resnet32", "resnet44", "resnet56"]  # resnet20: samples/resnet20.onnx is it, converted
pytestmark = pytest.mark.slow  # real networks scored and audited on the real subset: 20-260 s each


def _with_training(shared_data: Path):
    config = fast_config(shared_data, passes=1)
    train = shared_data.parent / "cifar10-train-first4000.npz"
    return dataclasses.replace(config, audit=dataclasses.replace(config.audit, train_data=train))


def _failing(result) -> set[str]:
    return {check.name for check in result.audit.checks if check.verdict == "fail"}


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_shipped_sample_passes_the_audit(tmp_path, shared_data, sample):
    result = score(ROOT / "samples" / sample, _with_training(shared_data), tmp_path / "o")
    assert result.audit.verdict == "pass", result.audit.reason
    assert result.audit.drop_points < result.audit.tolerance_points
    assert not _failing(result) and result.audit.training.images == 2000 and result.audit.batch.changed == 0


@pytest.mark.parametrize("name", RESNETS)
def test_each_shared_resnet_passes_the_audit(tmp_path, shared_data, name):
    pytest.importorskip("torch", reason="the [torch] extra is not installed")
    from converters.common import ContractOptions
    from converters.pytorch_to_onnx import convert, load_weights
    from samples import cifar_resnet

    (weights,) = (shared_data.parents[1] / "models").glob(f"{name}-*.th")
    model = getattr(cifar_resnet, name)()
    load_weights(model, weights)
    convert(model, tmp_path / f"{name}.onnx", ContractOptions("float32", "nchw", (0.485, 0.456, 0.406),
                                                               (0.229, 0.224, 0.225)))
    result = score(tmp_path / f"{name}.onnx", _with_training(shared_data), tmp_path / "o")
    assert result.audit.verdict == "pass", result.audit.reason
    assert result.accuracy > 0.9 and abs(result.audit.drop_points) < 2.0 and not _failing(result)


def test_each_memoriser_of_the_real_test_set_is_caught(tmp_path, shared_data):
    with np.load(shared_data) as test, np.load(shared_data.parent / "cifar10-train-first4000.npz") as train:
        images, labels, train_images, train_labels = test["x"], test["y"], train["x"], train["y"]
    cheats = {
        "batch": (batch_recogniser(tmp_path / "a.onnx", images, labels), {"copies", "batch_independence"}),
        "neighbour": (flip_invariant_neighbour(tmp_path / "b.onnx", images, labels), {"training_probe"}),
        "neighbour+train": (flip_invariant_neighbour(tmp_path / "c.onnx", images, labels,
                                                     (train_images[:2000], train_labels[:2000])), {"training_probe"}),
    }
    for name, (model, caught_by) in cheats.items():
        result = score(model, _with_training(shared_data), tmp_path / name)
        assert result.accuracy == 1.0 and result.audit.verdict == "suspect", name
        assert caught_by <= _failing(result), (name, result.audit.reason)


def test_a_converted_keras_model_trained_on_training_images_passes_every_check(tmp_path, shared_data):
    """Keras' own graph (after tf2onnx) is no memoriser either: trained briefly on the 4,000 training images."""
    keras = pytest.importorskip("keras", reason="the [tf] extra is not installed")
    from converters.common import ContractOptions
    from converters.tf_to_onnx import convert
    from samples.keras_cnn import keras_cnn

    keras.utils.set_random_seed(0)
    with np.load(shared_data.parent / "cifar10-train-first4000.npz") as train:
        images, labels = train["x"].astype("float32") / 255.0, train["y"].astype(np.int64)
    model = keras_cnn(width=16)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=128, epochs=4, verbose=0)
    convert(lambda x: model(x, training=False), tmp_path / "keras.onnx", ContractOptions("uint8", "nhwc"))
    result = score(tmp_path / "keras.onnx", _with_training(shared_data), tmp_path / "o")
    assert result.accuracy > 0.25, result.accuracy  # learned something, on images it never saw
    assert result.audit.verdict == "pass" and not _failing(result), result.audit.reason
    assert {check.name for check in result.audit.checks} >= {"copies", "batch_independence", "training_probe",
                                                              "graph_inspection"}
