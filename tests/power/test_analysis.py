"""Window arithmetic on samples: counters at the edges, power integrals, gaps; null, never zero."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.errors import MeterError
from evaluator.power.analysis import (
    Samples,
    Window,
    check_continuity,
    counter_energy_j,
    gap_limit_s,
    integrated_power_j,
    largest_gap_s,
    load_samples,
)


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


def _rapl_samples(t: np.ndarray, energy: np.ndarray, wrap_s: float | None) -> Samples:
    channels = [{"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j", "note": ""}]
    return Samples(t, {"cpu_package0_energy_j": energy}, channels, {}, 0.01, True, wrap_s)


def test_a_gap_that_could_hide_a_counter_wrap_is_refused():
    """A 0.3 s stall passes the 0.5 s stall limit, but a counter that can wrap in 0.4 s may have wrapped unseen."""
    t = np.concatenate([np.arange(0.0, 1.0, 0.01), np.arange(1.3, 3.0, 0.01)])
    window = Window("measured", 0.5, 2.5)
    assert check_continuity(_rapl_samples(t, 40 * t, None), window) == pytest.approx(0.31)
    assert gap_limit_s(_rapl_samples(t, 40 * t, 0.4)) == pytest.approx(0.2)
    with pytest.raises(MeterError, match=r"can wrap in 0\.40 s"):
        check_continuity(_rapl_samples(t, 40 * t, 0.4), window)
    assert check_continuity(_rapl_samples(t, 40 * t, 0.8), window) == pytest.approx(0.31)  # limit 0.4 s


def test_a_counter_without_valid_readings_around_the_window_may_have_wrapped_unseen():
    """Failed reads (NaN) blind one counter as a stall blinds all; the neighbours of the window's edges count."""
    t = np.arange(0.0, 3.0, 0.01)
    energy = 40 * t
    energy[31:55] = np.nan  # no reading from 0.30 to 0.55 s, across the window's start
    samples = _rapl_samples(t, energy, 0.4)
    with pytest.raises(MeterError, match=r"no valid reading for 0\.25 s"):
        check_continuity(samples, Window("measured", 0.5, 2.5))
    check_continuity(samples, Window("measured", 0.6, 2.5))


def test_samples_header_without_wrap_time_still_reads(tmp_path):
    """Files written before the wrap time was recorded load, with no wrap limit."""
    path = tmp_path / "old.csv"
    meta = {"format": "edl-samples/1", "clock": "time.monotonic", "period_s": 0.01, "unavailable": {},
            "channels": [{"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j", "note": ""}]}
    path.write_text("# " + json.dumps(meta) + "\nt_s,cpu_package0_energy_j\n0.0,0.0\n0.01,0.4\n# end\n")
    samples = load_samples(path)
    assert samples.shortest_wrap_s is None and samples.complete and samples.t_s.size == 2
    assert gap_limit_s(samples) == 0.5
