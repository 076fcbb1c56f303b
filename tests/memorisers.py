"""The cheats the generalization audit must catch, built as an attacker would: numpy and onnx.helper, an hour each.

- ``batch_recogniser``: a fixed batch; statistics of the *whole batch* that a flip leaves unchanged
  and a small shift barely moves (per-channel mean and mean square over all its images), the
  nearest stored batch signature, that batch's stored labels in order. It beats copies that keep
  the test set's order and batch partition.
- ``flip_invariant_neighbour``: 27 features per image that a flip leaves unchanged and a 2-px shift
  barely moves (a 4x2 grid of 8x8 means of the left-right symmetrised image per channel, and each
  channel's mean square), the nearest stored image, its label. Over the test set it beats flipped
  and shifted copies; over test and training images (``extra``) it also knows the training images
  it stored.

Each takes uint8 NHWC pixels and returns int64 labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import save
from onnx import TensorProto, helper, numpy_helper

SQUARE_SCALE = 1 / 255  # mean squares onto the scale of the means
OPSET = [helper.make_opsetid("", 17)]


def _batch_signatures(images: np.ndarray, batch: int) -> np.ndarray:
    """Each stored batch's per-channel mean and (scaled) mean square, as the graph computes them."""
    pixels = images.astype(np.float32).reshape(-1, batch, 32 * 32, 3)
    return np.concatenate([pixels.mean(axis=(1, 2)), (pixels**2).mean(axis=(1, 2)) * SQUARE_SCALE], axis=1)


def batch_recogniser(path: Path, images: np.ndarray, labels: np.ndarray, batch: int = 250) -> Path:
    """Recognise which stored batch this is from whole-batch statistics; return its stored labels in order."""
    if len(images) % batch:
        raise ValueError(f"{len(images)} images are not whole batches of {batch}")
    x = helper.make_tensor_value_info("pixels", TensorProto.UINT8, [batch, 32, 32, 3])
    y = helper.make_tensor_value_info("labels", TensorProto.INT64, [batch])
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["as_float"], ["mean"], axes=[0, 1, 2], keepdims=0),
        helper.make_node("Mul", ["as_float", "as_float"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["mean_square_raw"], axes=[0, 1, 2], keepdims=0),
        helper.make_node("Mul", ["mean_square_raw", "square_scale"], ["mean_square"]),
        helper.make_node("Concat", ["mean", "mean_square"], ["signature"], axis=0),
        helper.make_node("Sub", ["signature", "stored_signatures"], ["difference"]),
        helper.make_node("Mul", ["difference", "difference"], ["difference_squared"]),
        helper.make_node("ReduceSum", ["difference_squared", "last_axis"], ["distance"], keepdims=0),
        helper.make_node("ArgMin", ["distance"], ["nearest"], axis=0, keepdims=1),
        helper.make_node("Gather", ["stored_labels", "nearest"], ["gathered"], axis=0),
        helper.make_node("Reshape", ["gathered", "label_shape"], ["labels"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([SQUARE_SCALE], np.float32), "square_scale"),
        numpy_helper.from_array(_batch_signatures(images, batch), "stored_signatures"),
        numpy_helper.from_array(np.array([1], np.int64), "last_axis"),
        numpy_helper.from_array(labels.astype(np.int64).reshape(-1, batch), "stored_labels"),
        numpy_helper.from_array(np.array([batch], np.int64), "label_shape"),
    ]
    graph = helper.make_graph(nodes, "batch_recogniser", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=OPSET), path)


def flip_invariant_features(images: np.ndarray) -> np.ndarray:
    """The 27 features the neighbour graph computes, in numpy (to store the keys)."""
    pixels = images.astype(np.float32).transpose(0, 3, 1, 2)  # NCHW
    symmetric = (pixels + pixels[:, :, :, ::-1]) / 2
    grid = symmetric.reshape(len(images), 3, 4, 8, 4, 8).mean(axis=(3, 5))[:, :, :, :2]
    squares = (pixels**2).mean(axis=(2, 3)) * SQUARE_SCALE
    return np.concatenate([grid.reshape(len(images), 24), squares], axis=1)


def flip_invariant_neighbour(path: Path, images: np.ndarray, labels: np.ndarray,
                             extra: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The nearest stored image by 27 flip-invariant features; ``extra`` stores more (training) images too."""
    if extra is not None:
        images, labels = np.concatenate([images, extra[0]]), np.concatenate([labels, extra[1]])
    keys = flip_invariant_features(images)
    x = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 32, 32, 3])
    y = helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"])
    big = np.iinfo(np.int64).max
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Slice", ["nchw", "minus_one", "most_negative", "width_axis", "minus_one"], ["mirrored"]),
        helper.make_node("Add", ["nchw", "mirrored"], ["doubled"]),
        helper.make_node("Mul", ["doubled", "half"], ["symmetric"]),
        helper.make_node("AveragePool", ["symmetric"], ["grid"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Slice", ["grid", "zero", "two", "width_axis"], ["half_grid"]),
        helper.make_node("Reshape", ["half_grid", "grid_shape"], ["grid_features"]),
        helper.make_node("Mul", ["nchw", "nchw"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["mean_square_raw"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["mean_square_raw", "square_scale"], ["mean_square"]),
        helper.make_node("Concat", ["grid_features", "mean_square"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "keys_transposed"], ["dot"]),
        helper.make_node("Mul", ["dot", "minus_two"], ["cross"]),
        helper.make_node("Add", ["cross", "key_norms"], ["distance"]),  # |f - k|^2 less |f|^2 (same per row)
        helper.make_node("ArgMin", ["distance"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("Gather", ["stored_labels", "nearest"], ["labels"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([-big], np.int64), "most_negative"),
        numpy_helper.from_array(np.array([3], np.int64), "width_axis"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([0.5], np.float32), "half"),
        numpy_helper.from_array(np.array([-1, 24], np.int64), "grid_shape"),
        numpy_helper.from_array(np.array([SQUARE_SCALE], np.float32), "square_scale"),
        numpy_helper.from_array(np.ascontiguousarray(keys.T), "keys_transposed"),
        numpy_helper.from_array(np.array([-2.0], np.float32), "minus_two"),
        numpy_helper.from_array((keys**2).sum(axis=1).astype(np.float32), "key_norms"),
        numpy_helper.from_array(labels.astype(np.int64), "stored_labels"),
    ]
    graph = helper.make_graph(nodes, "flip_invariant_neighbour", [x], [y], initializers)
    return save(helper.make_model(graph, opset_imports=OPSET), path)
