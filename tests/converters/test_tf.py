"""The Keras/TensorFlow converter through tf2onnx, verified against TensorFlow's outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from converters.common import ContractOptions
from evaluator.contract.check import check_submission
from evaluator.contract.spec import DEFAULT_BATCH_SIZE

tf = pytest.importorskip("tensorflow", reason="the [tf] extra is not installed")
keras = pytest.importorskip("keras", reason="the [tf] extra is not installed")
ROOT = Path(__file__).parents[2]


def _tiny_keras():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize(("dtype", "layout", "batch"), [("uint8", "nhwc", None), ("float32", "nchw", 50),
                                                        ("float16", "nhwc", None)])
def test_keras_contract_forms(tmp_path, dtype, layout, batch):
    from converters.tf_to_onnx import convert

    model = _tiny_keras()
    reports = convert(lambda x: model(x, training=False), tmp_path / "k.onnx",
                      ContractOptions(dtype, layout, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch))
    assert reports[0].argmax_agreement["random"] == 1.0
    contract = check_submission(tmp_path / "k.onnx").contract
    assert (contract.input_dtype, contract.layout.lower()) == (dtype, layout)
    assert contract.batch_size(None)[0] == (batch or DEFAULT_BATCH_SIZE)


@pytest.mark.slow  # real converter processes, tensorflow imported in each
def test_keras_file_and_savedmodel_through_the_cli(tmp_path):
    model = _tiny_keras()
    model.save(tmp_path / "m.keras")
    model.export(str(tmp_path / "saved"))
    for source in (tmp_path / "m.keras", tmp_path / "saved"):
        out = tmp_path / f"{source.stem}.onnx"
        run = subprocess.run([sys.executable, "-m", "converters.tf_to_onnx", "--model", str(source), "--input", "uint8",
                              "--output", str(out), "--fp16"], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "argmax agreement" in run.stdout
        assert check_submission(out).valid and check_submission(out.with_suffix(".fp16.onnx")).valid


@pytest.mark.slow  # a real converter process, tensorflow imported in it
def test_keras_missing_model_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, "-m", "converters.tf_to_onnx", "--model", str(tmp_path / "none.keras"),
                          "--output", str(tmp_path / "x.onnx")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "no such model" in run.stderr and "Traceback" not in run.stderr
