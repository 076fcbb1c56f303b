"""Accuracy categories: a submission competes in the highest threshold it reaches."""

from __future__ import annotations

from evaluator.config import DEFAULT_THRESHOLDS


def category_for(accuracy: float, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS) -> float | None:
    """The highest threshold ``accuracy`` reaches (96.5 % competes at 95 %), or None below all of them."""
    reached = [threshold for threshold in thresholds if accuracy >= threshold]
    return max(reached) if reached else None
