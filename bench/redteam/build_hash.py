"""Red-team cheat: an exact pixel hash of every audit copy the evaluator can draw, no selector operator.

The copies are a deterministic function of the public test image: flip in {0,1} x dy, dx in [-2, 2]
(reflect padding), 50 variants per image.  The training probe draws from the public training images.
So the graph stores a 3-number integer hash of every variant of every test image and of every given
training image, and for each input image: Equal against every stored hash (no ArgMin/ArgMax/TopK/
Hardmax/Softmax), And, Cast, MatMul with a one-hot table scaled by 1000 (not 0/1, so not "labels"),
added to a fallback (nothing, or ResNet-20 merged in).

The hash is exact on any device: uint8 pixels times integer weights 0..7 sum to < 2**24, so every
partial sum is an exactly representable float32 (also under TF32: 8-bit values, FP32 accumulation).

usage: build_hash.py OUT.onnx [--fallback none|resnet20] [--train N] [--selective]
  --selective: store only test variants whose ResNet-20 answer is wrong (a bounded boost, see report)
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
from evaluator.data.transforms import Draw, apply  # noqa: E402

SHIFT = 2
K = 3  # hash words
SCALE = 1000.0


def variants(images: np.ndarray) -> np.ndarray:
    """(V, N, 32, 32, 3): every flip x shift the audit can draw, by the evaluator's own apply()."""
    n = len(images)
    out = []
    for flip in (False, True):
        for dy in range(-SHIFT, SHIFT + 1):
            for dx in range(-SHIFT, SHIFT + 1):
                d = Draw(np.full(n, flip), np.tile(np.array([[dy, dx]]), (n, 1)))
                out.append(apply(images, d))
    return np.stack(out)


def hashes(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.int64) @ weights.astype(np.int64)


def resnet_predict(images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    s = ort.InferenceSession(str(ROOT / "samples" / "resnet20.onnx"), providers=["CPUExecutionProvider"])
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255
    return np.concatenate([s.run(None, {"pixels": x[i:i + 250]})[0].argmax(1) for i in range(0, len(x), 250)])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--fallback", choices=["none", "resnet20"], default="none")
    p.add_argument("--train", type=int, default=4000, help="training images stored (0: none)")
    p.add_argument("--selective", action="store_true")
    a = p.parse_args()

    rng = np.random.default_rng(1234)
    weights = rng.integers(0, 8, size=(3072, K))
    test = np.load(SHARED / "data" / "cifar10-test-first1000.npz")
    x, y = test["x"], test["y"].astype(np.int64)
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3), (x.dtype, x.shape)
    var = variants(x)  # (50, N, ...)
    keys = [hashes(v, weights) for v in var]
    labels = [y] * len(var)
    if a.selective:
        keep = [resnet_predict(v) != y for v in var]
        keys = [k[m] for k, m in zip(keys, keep, strict=True)]
        labels = [stored[m] for stored, m in zip(labels, keep, strict=True)]
    if a.train:
        tr = np.load(SHARED / "data" / "cifar10-train-first4000.npz")
        tx, ty = tr["x"][: a.train], tr["y"][: a.train].astype(np.int64)
        if a.selective:
            m = resnet_predict(tx) != ty
            tx, ty = tx[m], ty[m]
        keys.append(hashes(tx, weights))
        labels.append(ty)
    keys, labels = np.concatenate(keys), np.concatenate(labels)
    # one row per distinct hash; a hash with two labels is dropped
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    onehot = np.zeros((len(uniq), 10), np.float32)
    onehot[inv, labels] = 1
    ok = onehot.sum(1) == 1
    uniq, onehot = uniq[ok], onehot[ok] * SCALE
    perm = rng.permutation(len(uniq))  # stored order carries nothing
    uniq, onehot = uniq[perm], onehot[perm]
    assert uniq.max() < 2**24
    print(f"rows {len(uniq)} (dropped {int((~ok).sum())} ambiguous)")

    nodes = [
        helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["h"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 3072], np.int64), "flat_shape"),
             numpy_helper.from_array(weights.astype(np.float32), "w"),
             numpy_helper.from_array(onehot, "votes")]
    eqs = []
    for k in range(K):
        nodes += [helper.make_node("Slice", ["h", f"s{k}", f"e{k}", "one"], [f"h{k}"]),
                  helper.make_node("Equal", [f"h{k}", f"t{k}"], [f"eq{k}"])]
        inits += [numpy_helper.from_array(np.array([k], np.int64), f"s{k}"),
                  numpy_helper.from_array(np.array([k + 1], np.int64), f"e{k}"),
                  numpy_helper.from_array(uniq[:, k].astype(np.float32)[None, :], f"t{k}")]
        eqs.append(f"eq{k}")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    nodes += [helper.make_node("And", [eqs[0], eqs[1]], ["and01"]),
              helper.make_node("And", ["and01", eqs[2]], ["hit"]),
              helper.make_node("Cast", ["hit"], ["hitf"], to=TensorProto.FLOAT),
              helper.make_node("MatMul", ["hitf", "votes"], ["boost"])]
    px = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 32, 32, 3])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    if a.fallback == "none":
        nodes.append(helper.make_node("Identity", ["boost"], ["scores"]))
    else:
        rn = compose.add_prefix(onnx.load(str(ROOT / "samples" / "resnet20.onnx")), "rn_")
        g = rn.graph
        nodes += [helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
                  helper.make_node("Mul", ["nchw", "inv255"], [g.input[0].name])]
        inits.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"))
        nodes += list(g.node)
        inits += list(g.initializer)
        nodes.append(helper.make_node("Add", [g.output[0].name, "boost"], ["scores"]))
    graph = helper.make_graph(nodes, "cheat", [px], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, a.out)
    print("saved", a.out)


if __name__ == "__main__":
    main()
