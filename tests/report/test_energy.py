"""The energy sections of a result, from samples of known power."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.errors import MeterError
from evaluator.power.analysis import Samples, Window, domain_reading
from evaluator.report.energy import run_energy


def _samples(columns: dict[str, np.ndarray], t: np.ndarray, channels, unavailable=None) -> Samples:
    return Samples(t, columns, channels, unavailable or {}, 0.01, True)


def test_energy_report_sums_cpu_and_gpu_and_subtracts_idle():
    t = np.arange(0.0, 20.0, 0.01)
    gpu_w = np.where(t < 10, 80.0, 300.0)
    gpu_e = np.concatenate([[0], np.cumsum((gpu_w[1:] + gpu_w[:-1]) / 2 * 0.01)])
    samples = _samples(
        {"gpu0_energy_j": gpu_e, "gpu0_power_w": gpu_w, "cpu_package0_energy_j": 40.0 * t},
        t,
        [{"name": "gpu0_energy_j", "domain": "gpu", "kind": "energy_j"},
         {"name": "gpu0_power_w", "domain": "gpu", "kind": "power_w"},
         {"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j"}],
    )
    report, warnings = run_energy(samples, Window("measured", 11.0, 19.0), passes=4, images_per_pass=100,
                                  idle=Window("idle", 1.0, 9.0))
    assert report.gpu_j == pytest.approx(2400.0)
    assert report.cpu_j == pytest.approx(320.0)
    assert report.total_j == pytest.approx(2720.0) and report.total_domains == ["gpu", "cpu"]
    assert report.per_pass_j == pytest.approx(680.0)
    assert report.per_image_j == pytest.approx(6.8)
    assert report.dram_j is None and "dram" in report.domains["dram"].reason
    assert report.idle is not None and report.idle.total_w == pytest.approx(120.0)
    assert report.above_idle_j == pytest.approx(2720.0 - 120.0 * 8)
    assert report.domains["gpu"].counter_vs_integral == pytest.approx(0.0, abs=1e-9)
    assert warnings and "under 10 s" in warnings[0]


def test_energy_report_with_no_sources_is_null_not_zero():
    t = np.arange(0.0, 2.0, 0.01)
    samples = _samples({}, t, [], {"nvml": "no GPU", "rapl": "no RAPL"})
    report, _ = run_energy(samples, Window("measured", 0.5, 1.5), passes=1, images_per_pass=10)
    assert report.total_j is None and report.per_pass_j is None
    assert report.missing_domains == {"gpu": "no GPU", "cpu": "no RAPL"}
    assert report.reason == "gpu: no GPU; cpu: no RAPL"


def test_stalled_sampler_invalidates_the_measurement():
    t = np.concatenate([np.arange(0.0, 1.0, 0.01), np.arange(3.0, 4.0, 0.01)])
    samples = _samples({"cpu_package0_energy_j": 10 * t}, t,
                       [{"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j"}])
    with pytest.raises(MeterError, match="gap"):
        run_energy(samples, Window("measured", 0.5, 3.5), passes=1, images_per_pass=1)


CPU_W = 40.0
RAPL_COUNTER = {"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j", "note": ""}


def test_the_achieved_sample_period_is_reported_beside_the_requested_one():
    intervals = np.tile([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.03], 40)  # every tenth is late
    t = np.concatenate([[0.0], np.cumsum(intervals)])
    samples = _samples({"cpu_package0_energy_j": CPU_W * t}, t, [RAPL_COUNTER])
    report, _ = run_energy(samples, Window("measured", 0.0, float(t[-1])), passes=1, images_per_pass=1)
    assert report.sample_period_s == 0.01
    assert report.sample_period_achieved_s == pytest.approx(0.01)
    assert report.sample_period_p95_s == pytest.approx(0.03)
    assert report.gap_limit_s == 0.5 and report.largest_gap_s == pytest.approx(0.03)


GPU_W = 200.0
NVML_COUNTER = {"name": "gpu0_energy_j", "domain": "gpu", "kind": "energy_j", "note": ""}
NVML_POWER = {"name": "gpu0_power_w", "domain": "gpu", "kind": "power_w", "note": ""}


def _short_passes(start: float, end: float) -> list[Window]:
    """Consecutive passes of 15, 30 and 60 ms, as small models on a fast GPU make them."""
    windows, t, lengths = [], start, [0.015, 0.03, 0.06]
    while t + lengths[len(windows) % 3] <= end:
        windows.append(Window(f"pass{len(windows)}", t, t + lengths[len(windows) % 3]))
        t = windows[-1].end_s
    return windows


def _stepped_gpu_samples(channels: list[dict]) -> Samples:
    """Constant GPU and CPU watts; NVML's counter steps every 100 ms, RAPL's moves at every 10 ms sample."""
    t = np.round(np.arange(0.0, 3.0, 0.01), 6)
    columns = {"gpu0_energy_j": GPU_W * np.floor(t / 0.1) * 0.1, "gpu0_power_w": np.full(t.size, GPU_W),
               "cpu_package0_energy_j": CPU_W * t}
    return _samples({c["name"]: columns[c["name"]] for c in channels}, t, channels)


def _relative_errors(joules: list[float | None], watts: float, windows: list[Window]) -> np.ndarray:
    return np.array([j / (watts * w.seconds) - 1 for j, w in zip(joules, windows, strict=True)])


def test_per_pass_joules_integrate_instant_power_where_the_counter_steps_every_100_ms():
    samples = _stepped_gpu_samples([NVML_COUNTER, NVML_POWER, RAPL_COUNTER])
    measured = Window("measured", 0.505, 2.505)
    passes = _short_passes(measured.start_s, measured.end_s)
    report, warnings = run_energy(samples, measured, len(passes), 100, pass_windows=passes)
    assert report.passes_j_method == {"gpu": "integrated instant power", "cpu": "energy counter"}
    assert np.abs(_relative_errors(report.passes_j, GPU_W + CPU_W, passes)).max() < 1e-9
    counter_only = _relative_errors([domain_reading(samples, "gpu", w).joules for w in passes], GPU_W, passes)
    assert counter_only.min() < -0.9 and counter_only.max() > 2.0  # what passes_j was before: -100 % .. +500 %
    assert not any("per-pass" in w for w in warnings)


def test_a_domain_with_only_a_coarse_counter_is_left_out_of_per_pass_joules_and_says_why():
    samples = _stepped_gpu_samples([NVML_COUNTER, RAPL_COUNTER])
    measured = Window("measured", 0.505, 2.505)
    passes = _short_passes(measured.start_s, measured.end_s)
    report, warnings = run_energy(samples, measured, len(passes), 100, pass_windows=passes)
    assert report.passes_j_method["cpu"] == "energy counter"
    assert report.passes_j_method["gpu"].startswith("left out: its energy counter moves only every 0.100 s")
    assert np.abs(_relative_errors(report.passes_j, CPU_W, passes)).max() < 1e-9  # the CPU alone
    assert report.gpu_j == pytest.approx(GPU_W * 2.0, rel=0.01)  # the window's total still counts the GPU
    assert any(w.startswith("per-pass joules leave out gpu") for w in warnings)


def _idle_then_work(gap: tuple[float, float] | None = None, wrap_s: float | None = None) -> Samples:
    """RAPL at 40 W and an NVML counter stepping every 100 ms: 80 W idle from 1 s to 9 s, 300 W before and after.

    ``gap``: no sample in that span (a stalled sampler); ``wrap_s``: the RAPL counter's recorded wrap time.
    """
    t = np.round(np.arange(0.0, 20.0, 0.01), 6)
    if gap is not None:
        t = t[(t < gap[0]) | (t > gap[1])]
    fine = np.arange(0.0, 20.0, 0.001)
    watts = np.where((fine >= 1.0) & (fine < 9.0), 80.0, 300.0)
    cumulative = np.concatenate([[0.0], np.cumsum(watts[:-1] * 0.001)])
    stepped = np.interp(np.floor(t / 0.1 + 1e-9) * 0.1, fine, cumulative)  # NVML publishes every 100 ms
    channels = [NVML_COUNTER, RAPL_COUNTER]
    return Samples(t, {"gpu0_energy_j": stepped, "cpu_package0_energy_j": CPU_W * t}, channels, {}, 0.01, True,
                   wrap_s)


def test_idle_watts_leave_out_the_step_that_carries_the_priming_work():
    """The idle window opens 5 ms after the work: NVML's first step inside it holds 95 ms of 300 W work."""
    samples = _idle_then_work()
    report, warnings = run_energy(samples, Window("measured", 10.0, 19.0), passes=1, images_per_pass=1,
                                  idle=Window("idle", 1.005, 8.005))
    assert report.idle is not None and report.idle.reason == "" and report.idle.method
    assert report.idle.watts["gpu"] == pytest.approx(80.0, rel=0.002)  # at the window's edges: +3.7 %
    assert report.idle.watts["cpu"] == pytest.approx(CPU_W, rel=1e-6)
    assert not any("idle" in w for w in warnings)


def test_a_stall_in_the_idle_baseline_leaves_its_figures_out_with_the_measured_window_s_reason():
    """A 1 s stall inside the idle window: the gap rule of the measured window, applied to idle, with its reason."""
    samples = _idle_then_work(gap=(4.0, 5.0), wrap_s=0.8)
    report, warnings = run_energy(samples, Window("measured", 10.0, 19.0), passes=1, images_per_pass=1,
                                  idle=Window("idle", 1.005, 8.005))
    assert report.total_j is not None  # the measured window is sound
    assert report.idle is not None and report.idle.total_w is None and report.above_idle_j is None
    assert report.idle.watts == {"gpu": None, "cpu": None, "dram": None}
    assert "gap inside the idle window" in report.idle.reason and "can wrap in 0.80 s" in report.idle.reason
    assert any(w.startswith("idle watts and above_idle_j are not reported: the samples have a 1.0") for w in warnings)


def test_passes_shorter_than_the_sample_interval_say_that_their_figures_are_interpolations():
    samples = _stepped_gpu_samples([NVML_POWER, RAPL_COUNTER])
    measured = Window("measured", 0.505, 1.505)
    passes = [Window(f"pass{i}", 0.505 + i * 0.004, 0.505 + (i + 1) * 0.004) for i in range(250)]
    _, warnings = run_energy(samples, measured, len(passes), 100, pass_windows=passes)
    assert any(w.startswith("passes last 4.0 ms (median), under the 10.0 ms between samples") for w in warnings)
    _, warnings = run_energy(samples, measured, 3, 100, pass_windows=_short_passes(0.505, 1.505))
    assert not any("between samples" in w for w in warnings)
