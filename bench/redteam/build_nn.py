"""Red-team cheat 2: a noise-robust nearest neighbour with no selector operator, gated onto ResNet-20.

Keys: the 27 flip-invariant features of tests/memorisers.py for every shift variant (dy, dx in [-2, 2],
reflect padding, by the evaluator's own apply(); a flip leaves the features unchanged) of every test
image, plus every given training image.  The nearest key is chosen by ReduceMin + Equal (not ArgMin/
ArgMax/TopK/Hardmax/Softmax), its label read by a MatMul with a one-hot table scaled by 1000 (not 0/1),
and that vote is added to ResNet-20's logits only when the nearest key is closer than --radius (squared
feature distance), so images far from every key (unseen images) get ResNet-20's honest answer.

usage: build_nn.py OUT.onnx [--radius R] [--fallback none|resnet20] [--train N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from memorisers import SQUARE_SCALE, flip_invariant_features  # noqa: E402

from evaluator.data.transforms import Draw, apply  # noqa: E402

SCALE = 1000.0


def shift_variants(images: np.ndarray, shift: int = 2) -> list[np.ndarray]:
    n = len(images)
    return [apply(images, Draw(np.zeros(n, bool), np.tile(np.array([[dy, dx]]), (n, 1))))
            for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]


def feature_nodes() -> tuple[list, list]:
    """pixels (uint8 NHWC) -> features [N, 27], as tests/memorisers.flip_invariant_neighbour computes them."""
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
    ]
    inits = [
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([-big], np.int64), "most_negative"),
        numpy_helper.from_array(np.array([3], np.int64), "width_axis"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([0.5], np.float32), "half"),
        numpy_helper.from_array(np.array([-1, 24], np.int64), "grid_shape"),
        numpy_helper.from_array(np.array([SQUARE_SCALE], np.float32), "square_scale"),
    ]
    return nodes, inits


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--radius", type=float, default=4.0)
    p.add_argument("--fallback", choices=["none", "resnet20"], default="resnet20")
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--target", type=float, default=None,
                   help="bounded boost: store only enough of ResNet-20's test errors to reach this test accuracy")
    a = p.parse_args()
    rng = np.random.default_rng(99)
    test = np.load(SHARED / "data" / "cifar10-test-first1000.npz")
    x, y = test["x"], test["y"].astype(np.int64)
    if a.target is not None:  # store only some of the images ResNet-20 gets wrong
        from build_hash import resnet_predict
        wrong = np.flatnonzero(resnet_predict(x) != y)
        need = max(0, round(a.target * len(x)) - (len(x) - len(wrong)))
        chosen = rng.choice(wrong, min(need, len(wrong)), replace=False)
        x, y = x[chosen], y[chosen]
        print(f"bounded boost: storing {len(chosen)} of {len(wrong)} ResNet-20 errors")
    keys = [flip_invariant_features(v) for v in shift_variants(x)]
    labels = [y] * len(keys)
    if a.train:
        tr = np.load(SHARED / "data" / "cifar10-train-first4000.npz")
        keys.append(flip_invariant_features(tr["x"][: a.train]))
        labels.append(tr["y"][: a.train].astype(np.int64))
    keys, labels = np.concatenate(keys).astype(np.float32), np.concatenate(labels)
    perm = rng.permutation(len(keys))
    keys, labels = keys[perm], labels[perm]
    votes = np.zeros((len(keys), 10), np.float32)
    votes[np.arange(len(keys)), labels] = SCALE
    print("rows", len(keys))

    nodes, inits = feature_nodes()
    nodes += [
        helper.make_node("MatMul", ["features", "keys_t"], ["dot"]),
        helper.make_node("Mul", ["dot", "minus_two"], ["cross"]),
        helper.make_node("Add", ["cross", "key_norms"], ["partial"]),  # |f-k|^2 - |f|^2
        helper.make_node("ReduceMin", ["partial"], ["nearest"], axes=[1], keepdims=1),
        helper.make_node("Equal", ["partial", "nearest"], ["is_nearest"]),
        helper.make_node("Cast", ["is_nearest"], ["one_hot"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["one_hot", "votes"], ["vote"]),
        helper.make_node("Mul", ["features", "features"], ["f2"]),
        helper.make_node("ReduceSum", ["f2", "one"], ["fnorm"], keepdims=1),
        helper.make_node("Add", ["nearest", "fnorm"], ["distance"]),
        helper.make_node("Less", ["distance", "radius"], ["close"]),
        helper.make_node("Cast", ["close"], ["gate"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["vote", "gate"], ["boost"]),
    ]
    inits += [numpy_helper.from_array(np.ascontiguousarray(keys.T), "keys_t"),
              numpy_helper.from_array(np.array([-2.0], np.float32), "minus_two"),
              numpy_helper.from_array((keys.astype(np.float64) ** 2).sum(1).astype(np.float32), "key_norms"),
              numpy_helper.from_array(votes, "votes"),
              numpy_helper.from_array(np.array([1], np.int64), "one"),
              numpy_helper.from_array(np.array([a.radius], np.float32), "radius")]
    if a.fallback == "none":
        nodes.append(helper.make_node("Identity", ["boost"], ["scores"]))
    else:
        rn = compose.add_prefix(onnx.load(str(ROOT / "samples" / "resnet20.onnx")), "rn_")
        g = rn.graph
        nodes += [helper.make_node("Mul", ["nchw", "inv255"], [g.input[0].name])]
        inits.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"))
        nodes += list(g.node)
        inits += list(g.initializer)
        nodes.append(helper.make_node("Add", [g.output[0].name, "boost"], ["scores"]))
    px = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 32, 32, 3])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    model = helper.make_model(helper.make_graph(nodes, "nn_cheat", [px], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, a.out)
    print("saved", a.out)


if __name__ == "__main__":
    main()
