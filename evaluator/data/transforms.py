"""Label-preserving copies of the test set: horizontal flips and small translations with reflect padding.

Pure numpy on canonical uint8 NHWC images. Every image gets its own flip and shift, drawn from the
generator the caller hands in, so the same seed gives the same copy on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class Draw:
    """Each image's transform: mirrored or not, and its shift in pixels (positive: content moves down/right)."""

    flips: np.ndarray  # bool (N,)
    shifts: np.ndarray  # int (N, 2): dy, dx


def draw(count: int, max_shift_px: int, rng: np.random.Generator) -> Draw:
    """A flip with probability 1/2 and a shift uniform in [-max, max] on each axis, per image."""
    flips = rng.random(count) < FLIP_PROBABILITY
    shifts = rng.integers(-max_shift_px, max_shift_px + 1, size=(count, 2))
    return Draw(flips, shifts)


def apply(images: np.ndarray, transforms: Draw) -> np.ndarray:
    """The transformed copy: flipped where drawn, then translated, the uncovered border reflected."""
    flipped = np.where(transforms.flips[:, None, None, None], images[:, :, ::-1, :], images)
    pad = int(np.abs(transforms.shifts).max()) if transforms.shifts.size else 0
    if pad == 0:
        return np.ascontiguousarray(flipped)
    padded = np.pad(flipped, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    out = np.empty_like(images)
    for (dy, dx), index in _groups(transforms.shifts):
        top, left = pad - dy, pad - dx
        out[index] = padded[index, top : top + height, left : left + width]
    return out


def _groups(shifts: np.ndarray) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Images sharing a shift, so each shift is one slice over many images."""
    keys, inverse = np.unique(shifts, axis=0, return_inverse=True)
    return [((int(dy), int(dx)), np.flatnonzero(inverse.reshape(-1) == k)) for k, (dy, dx) in enumerate(keys)]
