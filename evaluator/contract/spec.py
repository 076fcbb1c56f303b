"""The submission contract: what a submission takes, what it answers, and how its batch size is chosen.

CIFAR-10 is the contract: 32x32 RGB images, 10 classes. Everything that feeds a model (the scorer,
the audit, the converters' verification) turns pixels into the model's input with ``model_input``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIDE = 32
CHANNELS = 3
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, CHANNELS)  # canonical data: uint8 NHWC, RGB
NUM_CLASSES = 10
# 250 measured least energy per image on an H200 for ResNet-20 and -56, fp32 and fp16 (bench/RESULTS.md).
DEFAULT_BATCH_SIZE = 250
BATCH_METADATA_KEY = "edl.batch_size"
INPUT_DTYPES = ("float32", "float16", "uint8")
LAYOUTS = ("NCHW", "NHWC")


def model_input(images_nhwc: np.ndarray, dtype: str, layout: str) -> np.ndarray:
    """uint8 NHWC pixels in a model's input form: uint8 as they are, float scaled to [0, 1]; contiguous."""
    pixels = images_nhwc if layout.upper() == "NHWC" else images_nhwc.transpose(0, 3, 1, 2)
    if dtype == "uint8":
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray((pixels.astype(np.float32) / np.float32(255.0)).astype(dtype))


@dataclass(frozen=True)
class Contract:
    """How the evaluator feeds the model and reads its answer."""

    input_name: str
    input_dtype: str  # float32 | float16 | uint8
    layout: str  # NCHW | NHWC
    output_name: str
    output_kind: str  # scores | labels
    fixed_batch: int | None  # a fixed batch dimension in the graph
    metadata_batch: int | None  # metadata_props edl.batch_size

    def batch_size(self, requested: int | None) -> tuple[int, str]:
        """The batch size to run, and which rule chose it: graph, then metadata, then the option."""
        if self.fixed_batch is not None:
            return self.fixed_batch, "fixed batch dimension in the graph"
        if self.metadata_batch is not None:
            return self.metadata_batch, f"metadata_props {BATCH_METADATA_KEY}"
        if requested is not None:
            return requested, "--batch-size"
        return DEFAULT_BATCH_SIZE, "default"

    @property
    def batch_is_free(self) -> bool:
        """Neither the graph nor its metadata fixes the batch size: the evaluator may choose."""
        return self.fixed_batch is None and self.metadata_batch is None

    def inputs(self, images_nhwc: np.ndarray) -> np.ndarray:
        return model_input(images_nhwc, self.input_dtype, self.layout)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, NUM_CLASSES) if self.output_kind == "scores" else (batch,)
