"""A small Keras CNN for CIFAR-10: build, train, save as .keras, export through the converter.

    python samples/keras_cnn.py --train-npz ../shared/data/cifar10-train-first4000.npz --epochs 15 \\
        --output keras_cnn.onnx

Without --train-npz, Keras' CIFAR-10 loader downloads the 50,000 training images. The model takes
float NHWC pixels in [0, 1] (Keras' own layout); the submission takes uint8 NHWC pixels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.common import ContractOptions  # noqa: E402


def keras_cnn(width: int = 32):  # noqa: ANN201 - a keras.Model, imported lazily
    """Three conv blocks and a dense head; Rescaling-free: it takes [0, 1] pixels."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3), name="pixels")
    x = inputs
    for channels in (width, 2 * width, 4 * width):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # few steps: let the moving statistics converge
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, name="scores")(x)
    return keras.Model(inputs, outputs, name="keras_cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-npz", type=Path)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import keras

    from converters.tf_to_onnx import convert

    keras.utils.set_random_seed(args.seed)
    if args.train_npz:
        with np.load(args.train_npz) as archive:
            images, labels = archive["x"], archive["y"].astype(np.int64)
    else:
        (images, labels), _ = keras.datasets.cifar10.load_data()
        labels = labels.reshape(-1)
    model = keras_cnn()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.astype("float32") / 255.0, labels, batch_size=128, epochs=args.epochs, verbose=2)
    keras_path = args.output.with_suffix(".keras")
    keras_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(keras_path)
    for report in convert(keras.models.load_model(keras_path), args.output,
                          ContractOptions(input_dtype="uint8", layout="nhwc")):
        print(report.summary())
    print(f"wrote {keras_path} and {args.output}")


if __name__ == "__main__":
    main()
