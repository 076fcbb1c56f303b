"""How strong may the generalization audit be? Accuracy of real models and of a lookup cheat on audit copies.

For each model, the accuracy on the public images and on copies made by the audit's transform
family (horizontal flip with probability 1/2, translation up to S pixels with reflect padding) for
S = 0..4, several seeds each; prints the drop in percentage points. Real models: the shared
pretrained CIFAR ResNets (converted here with the project's converter) and the shipped samples.

    python bench/audit_strength.py [--data ../shared/data/cifar10-test-first1000.npz] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from builders import memorizing_model  # noqa: E402

from evaluator.contract.check import check_submission  # noqa: E402
from evaluator.data.store import load_path  # noqa: E402
from evaluator.data.transforms import apply, draw  # noqa: E402

SHARED = ROOT.parent / "shared"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def predict(model: Path, images: np.ndarray) -> np.ndarray:
    contract = check_submission(model).contract
    assert contract is not None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = contract.fixed_batch or 500
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        fill = batch - len(chunk) if contract.fixed_batch else 0
        feed = contract.inputs(np.concatenate([chunk, np.zeros((fill, *chunk.shape[1:]), chunk.dtype)]))
        scores = session.run(None, {contract.input_name: feed})[0][: len(chunk)]
        out.append(scores.argmax(1) if contract.output_kind == "scores" else scores)
    return np.concatenate(out)


def shared_resnets(folder: Path) -> dict[str, Path]:
    """The shared pretrained ResNets as ONNX files, converted (and verified) by the project's converter."""
    from converters.common import ContractOptions
    from converters.pytorch_to_onnx import convert, load_weights
    from samples import cifar_resnet

    models = {}
    for weights in sorted((SHARED / "models").glob("resnet*.th")):
        name = weights.name.split("-")[0]
        model = getattr(cifar_resnet, name)()
        load_weights(model, weights)
        path = folder / f"{name}.onnx"
        convert(model, path, ContractOptions("float32", "nchw", MEAN, STD))
        models[f"{name} (shared weights)"] = path
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10-test-first1000.npz")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-shift", type=int, default=4)
    args = parser.parse_args()
    dataset = load_path(args.data)
    images, labels = dataset.images, dataset.labels
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = {"samples/small_cnn.onnx": ROOT / "samples" / "small_cnn.onnx",
                  "samples/resnet20.onnx": ROOT / "samples" / "resnet20.onnx",
                  "samples/resnet20.fp16.onnx": ROOT / "samples" / "resnet20.fp16.onnx"}
        if (SHARED / "models").is_dir():
            models |= shared_resnets(folder)
        models["lookup cheat (6 operators)"] = memorizing_model(folder / "lookup.onnx", images, labels)
        table = {}
        for name, path in models.items():
            public = float(np.mean(predict(path, images) == labels))
            row = {"public_pct": round(public * 100, 2)}
            for shift in range(args.max_shift + 1):
                accuracies = [float(np.mean(predict(path, apply(images, draw(len(images), shift,
                                                                             np.random.default_rng(seed))))
                                            == labels)) for seed in range(args.seeds)]
                row[f"s{shift}_pct"] = round(float(np.mean(accuracies)) * 100, 2)
                row[f"s{shift}_drop_points"] = round((public - float(np.mean(accuracies))) * 100, 2)
                row[f"s{shift}_worst_drop_points"] = round((public - min(accuracies)) * 100, 2)
            table[name] = row
            print(json.dumps({name: row}), flush=True)
    print(json.dumps({"images": len(images), "seeds": args.seeds, "ort": ort.__version__}))


if __name__ == "__main__":
    main()
