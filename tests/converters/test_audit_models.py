"""Every shipped sample and every shared pretrained ResNet passes the generalization audit on real images."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import fast_config

from evaluator.scoring.score import score

ROOT = Path(__file__).parents[2]
SAMPLES = ["small_cnn.onnx", "resnet20.onnx", "resnet20.fp16.onnx"]
RESNETS = ["resnet32", "resnet44", "resnet56"]  # resnet20: samples/resnet20.onnx is it, converted


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_shipped_sample_passes_the_audit(tmp_path, shared_data, sample):
    result = score(ROOT / "samples" / sample, fast_config(shared_data, passes=1), tmp_path / "o")
    assert result.audit.verdict == "pass", result.audit.reason
    assert result.audit.drop_points < result.audit.tolerance_points


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
    result = score(tmp_path / f"{name}.onnx", fast_config(shared_data, passes=1), tmp_path / "o")
    assert result.audit.verdict == "pass", result.audit.reason
    assert result.accuracy > 0.9 and abs(result.audit.drop_points) < 2.0
