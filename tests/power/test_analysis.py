"""Window arithmetic on samples: counters at the edges, power integrals, gaps; null, never zero."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.errors import MeterError
from evaluator.power.analysis import Window, counter_energy_j, integrated_power_j, largest_gap_s


def _series(watts: float, start: float = 0.0, end: float = 3.0, period: float = 0.01):
    t = np.arange(start, end, period)
    return t, watts * t


def test_counter_energy_interpolates_window_edges():
    t, energy = _series(100.0)
    assert counter_energy_j(t, energy, Window("w", 1.005, 2.005)) == pytest.approx(100.0)
    assert counter_energy_j(t, energy, Window("w", 0.5, 0.503)) == pytest.approx(0.3)


def test_power_integral_is_trapezoidal_with_interpolated_edges():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    watts = np.array([0.0, 100.0, 100.0, 0.0])
    assert integrated_power_j(t, watts, Window("w", 0.0, 3.0)) == pytest.approx(200.0)
    assert integrated_power_j(t, watts, Window("w", 0.5, 1.5)) == pytest.approx((50 + 100) / 2 * 0.5 + 100 * 0.5)


def test_window_outside_samples_is_an_error():
    t, energy = _series(100.0)
    with pytest.raises(MeterError, match="do not cover"):
        counter_energy_j(t, energy, Window("late", 2.0, 5.0))


def test_gap_detection():
    t = np.array([0.0, 0.01, 0.02, 1.5, 1.51])
    assert largest_gap_s(t, Window("w", 0.0, 1.51)) == pytest.approx(1.48)
