from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """Fifty random CIFAR-shaped images (NHWC uint8) and labels, the same every time."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50).astype(np.uint8)
    return images, labels
