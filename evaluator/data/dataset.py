"""The canonical test set: uint8 NHWC images and labels, checked, and fingerprinted so results name their data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from evaluator.contract.spec import IMAGE_SHAPE, NUM_CLASSES
from evaluator.errors import DataError

FINGERPRINT_TAG = b"edl-cifar10-canonical-v1"


@dataclass(frozen=True)
class Dataset:
    """The canonical test set and where it came from."""

    images: np.ndarray  # uint8 (N, 32, 32, 3), RGB
    labels: np.ndarray  # uint8 (N,)
    source: str
    fingerprint: str
    official: bool
    note: str = ""

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])



def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over a tag, the count, the NHWC pixels and the labels: same data, same hex."""
    digest = hashlib.sha256(FINGERPRINT_TAG)
    digest.update(int(labels.shape[0]).to_bytes(8, "little"))
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def validate_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtypes and label range; return contiguous uint8 arrays."""
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images are {images.dtype}, expected uint8 raw pixels (0..255)")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, 32, 32, 3) NHWC")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have shape {labels.shape} and dtype {labels.dtype}, expected (N,) integers")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{where}: the data set is empty")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(f"{where}: labels must be 0..9, found {int(labels.min())}..{int(labels.max())}")
    return np.ascontiguousarray(images), np.ascontiguousarray(labels, dtype=np.uint8)
