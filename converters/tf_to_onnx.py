"""TensorFlow/Keras to a verified edl submission, through tf2onnx.

    python -m converters.tf_to_onnx --model model.keras --input uint8 --layout nhwc --output model.onnx

The source takes float NHWC pixels in [0, 1] (Keras' layout), optionally normalised by --mean and
--std; the wrapper puts the contract's input form and that normalisation inside the graph.
SavedModel folders are read through their ``serving_default`` signature.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    ContractOptions,
    ConversionError,
    Verification,
    add_contract_arguments,
    contract_from_args,
    finish,
    require,
    run_cli,
    set_batch_metadata,
)


def load_model(path: Path) -> Any:
    """A callable taking float NHWC pixels: a ``.keras``/``.h5`` model, or a SavedModel's serving signature."""
    tf = require("tensorflow", "tf")
    if not path.exists():
        raise ConversionError(f"{path}: no such model file or SavedModel folder")
    if path.is_dir():
        try:
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["serving_default"]
        except (KeyError, OSError, ValueError) as exc:
            raise ConversionError(f"{path}: not a SavedModel with a serving_default signature ({exc})") from None

        def call(x: Any, _keep_alive: Any = loaded) -> Any:  # the signature's variables live in `loaded`
            outputs = signature(x)
            if len(outputs) != 1:
                raise ConversionError(f"{path}: the signature has {len(outputs)} outputs; the contract needs one")
            return next(iter(outputs.values()))

        return call
    try:
        model = tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for unreadable files
        raise ConversionError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0]})") from None
    return lambda x: model(x, training=False)


def convert(model: Any, output: Path, options: ContractOptions, fp16: bool = False,
            verify_data: Path | None = None, opset: int = 17) -> list[Verification]:
    """Wrap ``model`` (float NHWC in, scores out) behind the contract, convert, verify."""
    tf = require("tensorflow", "tf")
    tf2onnx = require("tf2onnx", "tf")
    dtype = {"uint8": tf.uint8, "float32": tf.float32, "float16": tf.float16}[options.input_dtype]
    shape = (options.batch_size, 32, 32, 3) if options.layout == "nhwc" else (options.batch_size, 3, 32, 32)
    spec = (tf.TensorSpec(shape, dtype, name="pixels"),)

    @tf.function(input_signature=spec, autograph=False)
    def submission(pixels: Any) -> Any:
        x = tf.cast(pixels, tf.float32)
        if options.input_dtype == "uint8":
            x = x / 255.0
        if options.layout == "nchw":
            x = tf.transpose(x, (0, 2, 3, 1))
        if options.mean is not None:  # constants made inside the function: captured ones become inputs
            x = (x - tf.constant(options.mean, tf.float32)) / tf.constant(options.std, tf.float32)
        return tf.cast(model(x), tf.float32)

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf2onnx.convert.from_function(submission, input_signature=spec, opset=opset, output_path=str(output))
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
        raise ConversionError(f"tf2onnx failed: {str(exc).splitlines()[0]}") from None
    set_batch_metadata(output, options.batch_size)

    def reference(inputs: np.ndarray) -> np.ndarray:
        return submission(tf.constant(inputs)).numpy()

    return finish(output, reference, options, fp16, verify_data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a TensorFlow/Keras model to a verified edl submission.")
    parser.add_argument("--model", type=Path, required=True, help="a .keras/.h5 file or a SavedModel folder")
    add_contract_arguments(parser)
    parser.set_defaults(layout="nhwc")
    args = parser.parse_args(argv)
    options = contract_from_args(args)
    model = load_model(args.model)
    for report in convert(model, args.output, options, args.fp16, args.verify_data, args.opset):
        print(report.summary())
    print(f"wrote {args.output}" + (f" and {args.output.with_suffix('.fp16.onnx')}" if args.fp16 else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
