"""Does each named audit check catch the memorisers and spare honest models? Figures for bench/RESULTS.md.

Part 1 (``--flips``): how often an honest model's prediction changes with its batchmates and batch
size alone: the test images (and one audit copy) in several random compositions at batch sizes
250, 126, 97 and 1, against the official order at 250; the batch-independence tolerance comes from it.
Part 2: ``edl score`` (one measured pass, the audit with --train-data) of every honest model and
every memoriser of tests/memorisers.py; prints each check's figure, threshold and verdict, and the
audit's seconds.

    python bench/memorisers.py [--data ../shared/data/cifar10-test-first1000.npz]
        [--train-data ../shared/data/cifar10-train-first4000.npz] [--flips] [--extra-model PATH ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from audit_strength import SHARED, shared_resnets  # noqa: E402
from builders import fast_config  # noqa: E402
from memorisers import batch_recogniser, flip_invariant_neighbour  # noqa: E402

from evaluator.config import Secrets  # noqa: E402
from evaluator.contract.check import check_submission  # noqa: E402
from evaluator.data.store import load_path  # noqa: E402
from evaluator.data.transforms import apply, draw  # noqa: E402
from evaluator.runtime.runner import plain_predict  # noqa: E402
from evaluator.scoring.pipeline import score  # noqa: E402

SIZES = (250, 126, 97, 1)
COMPOSITIONS = 3


def flip_rates(model: Path, images: np.ndarray) -> dict[str, object]:
    """Changed predictions against the official order at batch 250, over compositions and sizes."""
    contract = check_submission(model).contract
    assert contract is not None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    sizes = (contract.fixed_batch,) if contract.fixed_batch else SIZES
    reference = plain_predict(session, contract, images, sizes[0])
    rng = np.random.default_rng(0)
    changed = {}
    for size in sizes:
        worst = 0
        for _ in range(COMPOSITIONS if size > 1 else 1):
            order = rng.permutation(len(images))
            again = np.empty(len(images), np.int64)
            again[order] = plain_predict(session, contract, images[order], size)
            worst = max(worst, int(np.count_nonzero(again != reference)))
        changed[f"batch {size}"] = worst
    return {"images": len(images), "most_changed": changed}


def check_table(model: Path, data: Path, train: Path | None, out: Path) -> dict[str, object]:
    config = fast_config(data, passes=1)
    config = dataclasses.replace(config, audit=dataclasses.replace(config.audit, train_data=train))
    result = score(model, config, out, secrets=Secrets(audit_secret="bench-secret"))
    audit = result.audit
    assert audit is not None
    return {"accuracy_pct": round((result.accuracy or 0) * 100, 1), "verdict": audit.verdict,
            "audit_seconds": round(audit.seconds or 0, 2), "pass_seconds": round(result.seconds or 0, 2),
            "checks": {c.name: [None if c.figure is None else round(c.figure, 2), c.threshold, c.verdict]
                       for c in audit.checks}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10-test-first1000.npz")
    parser.add_argument("--train-data", type=Path, default=SHARED / "data" / "cifar10-train-first4000.npz")
    parser.add_argument("--flips", action="store_true", help="part 1 only: honest flip rates")
    parser.add_argument("--no-resnets", action="store_true", help="skip converting the shared ResNets")
    parser.add_argument("--extra-model", type=Path, action="append", default=[])
    args = parser.parse_args()
    dataset = load_path(args.data)
    training = load_path(args.train_data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        honest = {f"samples/{name}": ROOT / "samples" / name
                  for name in ("resnet20.onnx", "resnet20.fp16.onnx", "small_cnn.onnx")}
        honest |= {str(path): path for path in args.extra_model}
        if (SHARED / "models").is_dir() and not args.no_resnets:
            honest |= shared_resnets(folder)
        if args.flips:
            copy = apply(dataset.images, draw(dataset.count, 2, np.random.default_rng(1)))
            for name, path in honest.items():
                print(json.dumps({name: {"test": flip_rates(path, dataset.images),
                                         "copy": flip_rates(path, copy)}}), flush=True)
            return
        half = training.count // 2
        cheats = {
            "batch recogniser (a)": batch_recogniser(folder / "a.onnx", dataset.images, dataset.labels),
            "flip-invariant neighbour over the test set (b)": flip_invariant_neighbour(
                folder / "b.onnx", dataset.images, dataset.labels),
            f"neighbour over test + {half} training images (c)": flip_invariant_neighbour(
                folder / "c.onnx", dataset.images, dataset.labels, (training.images[:half], training.labels[:half])),
            f"neighbour over test + all {training.count} training images (c, full)": flip_invariant_neighbour(
                folder / "c_full.onnx", dataset.images, dataset.labels, (training.images, training.labels)),
        }
        for index, (name, path) in enumerate({**honest, **cheats}.items()):
            print(json.dumps({name: check_table(path, args.data, args.train_data, folder / f"out{index}")}),
                  flush=True)
    print(json.dumps({"images": dataset.count, "training_images": training.count, "ort": ort.__version__}))


if __name__ == "__main__":
    main()
