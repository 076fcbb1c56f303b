"""A small CNN for CIFAR-10, trained by this project as the committed sample submission.

Four conv-BN-ReLU stages (32, 64, 128, 256 channels) with max-pooling, then a linear layer:
about 0.39 M parameters. Small enough to train on two CPU cores in minutes.
"""

from __future__ import annotations

from torch import nn


def _stage(in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


def small_cnn() -> nn.Module:
    return nn.Sequential(_stage(3, 32), _stage(32, 64), _stage(64, 128), _stage(128, 256),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
