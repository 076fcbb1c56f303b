"""Audit copies: flips and reflect-padded translations, exactly, and the same for the same generator."""

from __future__ import annotations

import numpy as np

from evaluator.data.transforms import Draw, apply, draw


def _ramp(count: int = 2) -> np.ndarray:
    return np.arange(count * 4 * 4, dtype=np.uint8).reshape(count, 4, 4, 1).repeat(3, axis=3)


def test_a_shift_moves_content_and_reflects_the_border():
    images = _ramp(1)
    down = apply(images, Draw(np.array([False]), np.array([[1, 0]])))[0, :, :, 0]
    assert down.tolist() == [[4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    left = apply(images, Draw(np.array([False]), np.array([[0, -2]])))[0, :, :, 0]
    assert left[0].tolist() == [2, 3, 2, 1]


def test_a_flip_mirrors_each_row_then_the_shift_applies():
    images = _ramp(1)
    flipped = apply(images, Draw(np.array([True]), np.array([[0, 0]])))[0, :, :, 0]
    assert flipped[0].tolist() == [3, 2, 1, 0]
    both = apply(images, Draw(np.array([True]), np.array([[0, -1]])))[0, :, :, 0]
    assert both[0].tolist() == [2, 1, 0, 1]


def test_each_image_gets_its_own_draw_and_the_same_seed_the_same_copy():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(500, 32, 32, 3), dtype=np.uint8)
    first = draw(500, 2, np.random.default_rng(1))
    assert 0.4 < first.flips.mean() < 0.6 and set(np.unique(first.shifts)) == {-2, -1, 0, 1, 2}
    copy = apply(images, first)
    assert np.array_equal(copy, apply(images, draw(500, 2, np.random.default_rng(1))))
    assert not np.array_equal(copy, apply(images, draw(500, 2, np.random.default_rng(2))))
    assert copy.dtype == np.uint8 and copy.shape == images.shape
    unmoved = ~first.flips & (first.shifts == 0).all(axis=1)
    assert np.array_equal(copy[unmoved], images[unmoved])
