"""Train a CIFAR-10 model in PyTorch (GPU or CPU), then export it through the converter.

    python samples/train_pytorch.py --model samples.cifar_resnet:resnet20 --epochs 180 --output resnet20.onnx
    python samples/train_pytorch.py --model samples.small_cnn:small_cnn \\
        --train-npz ../shared/data/cifar10-train-first4000.npz --epochs 40 --output samples/small_cnn.onnx

Without --train-npz, torchvision's CIFAR10 training set (50,000 images) is downloaded to --root.
Inputs are [0, 1] pixels normalised by CIFAR-10's channel statistics; the exported submission
takes uint8 NHWC pixels and does that normalisation inside the graph.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.common import ContractOptions  # noqa: E402
from converters.pytorch_to_onnx import convert, load_factory  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def training_arrays(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and labels: an .npz, or torchvision's CIFAR10 training set."""
    if args.train_npz:
        with np.load(args.train_npz) as archive:
            return archive["x"], archive["y"].astype(np.int64)
    import torchvision

    train = torchvision.datasets.CIFAR10(root=args.root, train=True, download=True)
    return np.asarray(train.data), np.asarray(train.targets, dtype=np.int64)


def augment(batch: torch.Tensor) -> torch.Tensor:
    """Random crop (4-pixel padding) and horizontal flip, on the device."""
    flip = torch.rand(batch.shape[0], device=batch.device) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    padded = nn.functional.pad(batch, (4, 4, 4, 4), mode="reflect")
    dx, dy = np.random.randint(0, 9, size=2)
    return padded[:, :, dy : dy + 32, dx : dx + 32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples.small_cnn:small_cnn", help="MODULE:FACTORY")
    parser.add_argument("--train-npz", type=Path, help="train on these images instead of the full training set")
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "edl" / "torchvision"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="train without flips and crops (for the audit bench)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images, labels = training_arrays(args)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    x_all = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(255)
    y_all = torch.from_numpy(labels).to(device)
    model = load_factory(args.model).to(device)
    steps = args.epochs * ((len(x_all) + args.batch_size - 1) // args.batch_size)
    optimiser = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=steps)
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_all), device=device)
        correct = 0
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            batch = x_all[index] if args.no_augment else augment(x_all[index])
            inputs = (batch - mean) / std
            logits = model(inputs)
            loss = nn.functional.cross_entropy(logits, y_all[index], label_smoothing=0.1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            correct += int((logits.argmax(1) == y_all[index]).sum())
        print(f"epoch {epoch + 1}/{args.epochs}: train accuracy {correct / len(x_all):.3f}, "
              f"{time.time() - started:.0f} s", flush=True)
    model = model.cpu().eval()
    options = ContractOptions(input_dtype="uint8", layout="nhwc", mean=MEAN, std=STD)
    for report in convert(model, args.output, options):
        print(report.summary())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
