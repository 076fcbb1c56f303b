"""The spawn sampler and the meter on real files and a fake NVML."""

from __future__ import annotations

import os
import signal
import time

import pytest
from builders import PowercapTree

from evaluator.errors import MeterError
from evaluator.power.analysis import Window, counter_energy_j, largest_gap_s, load_samples
from evaluator.power.meter import Meter, default_specs
from evaluator.power.nvml import NvmlSpec
from evaluator.power.rapl import RaplSpec
from evaluator.power.sampler import Sampler
from evaluator.report.energy import run_energy


def test_spawn_sampler_records_known_watts(tmp_path, fake_gpu):
    fake_gpu(watts=200.0)
    with PowercapTree(tmp_path / "pc", package_watts=[35.0], dram_watts=5.0):
        sampler = Sampler(default_specs((0,), "fake_pynvml", str(tmp_path / "pc")), tmp_path / "s.csv", 0.01)
        with sampler:
            start = time.monotonic()
            time.sleep(1.5)
            window = Window("measured", start, time.monotonic())
            time.sleep(0.05)
            sampler.stop()
    samples = load_samples(tmp_path / "s.csv")
    assert samples.complete and samples.unavailable == {}
    assert 100 <= samples.t_s.size <= 200  # ~10 ms period
    report, _ = run_energy(samples, window, passes=1, images_per_pass=1)
    assert report.gpu_j == pytest.approx(200.0 * window.seconds, rel=0.02)
    assert report.cpu_j == pytest.approx(35.0 * window.seconds, rel=0.02)
    assert report.dram_j == pytest.approx(5.0 * window.seconds, rel=0.02)


def test_killed_sampler_makes_the_measurement_invalid(tmp_path):
    sampler = Sampler([RaplSpec(root=str(tmp_path / "none")), NvmlSpec((0,), "fake_pynvml")], tmp_path / "s.csv")
    sampler.start()
    sampler._process.kill()
    sampler._process.join()
    with pytest.raises(MeterError, match="died"):
        sampler.stop()
    assert not load_samples(tmp_path / "s.csv").complete


def test_sampling_slower_than_the_counter_wrap_is_refused(tmp_path):
    PowercapTree(tmp_path / "pc", package_watts=[10.0], max_range_uj=50_000_000)  # wraps in 0.1 s at 500 W
    with pytest.raises(MeterError, match="too slow"):
        Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "s.csv", period_s=0.06).start()


def test_the_meter_marks_windows_and_a_disabled_meter_samples_nothing(tmp_path, fake_gpu):
    fake_gpu(watts=50.0)
    with Meter(tmp_path / "s.csv", (0,), 0.01) as meter:
        with meter.window("idle"):
            time.sleep(0.3)
        meter.mark(Window("pass0", 1.0, 2.0))
        samples = meter.stop()
    assert [w.name for w in meter.windows] == ["idle", "pass0"] and meter.find("idle").seconds >= 0.3
    assert samples is not None and samples.complete and samples.channels_of("gpu", "energy_j") == ["gpu0_energy_j"]
    off = Meter(tmp_path / "off.csv", (0,), 0.01, enabled=False)
    with off:
        with off.window("measured"):
            pass
        assert off.stop() is None
    assert not (tmp_path / "off.csv").exists() and off.find("measured") is not None



def _sample(sampler: Sampler, seconds: float, stall_s: float = 0.0) -> Window:
    """Sample for ``seconds``; with ``stall_s``, freeze the sampler process (SIGSTOP) that long in the middle.

    The window opens 0.2 s after the sampler is ready: its start-up competes for the CPU with the fake tree's
    writer thread, which then runs late (up to 150 ms seen on 2 loaded cores).
    """
    time.sleep(0.2)
    start = time.monotonic()
    time.sleep(seconds / 2)
    if stall_s:
        os.kill(sampler._process.pid, signal.SIGSTOP)
        time.sleep(stall_s)
        os.kill(sampler._process.pid, signal.SIGCONT)
    time.sleep(seconds / 2)
    window = Window("measured", start, time.monotonic())
    time.sleep(0.05)
    sampler.stop()
    return window


def test_a_stall_that_could_hide_a_rapl_wrap_invalidates_the_window(tmp_path):
    """At 500 W a 150 J counter wraps every 0.3 s: a 0.4 s stall, under the 0.5 s stall limit, loses one wrap.

    The fake tree's writer thread can run late at a window's edge: at 500 W, 100 ms late is 50 J, the
    tolerance below; a lost wrap is 150 J (and the counter sees a wrap lost for any stall of 0.3..0.6 s).
    """
    with PowercapTree(tmp_path / "pc", package_watts=[500.0], max_range_uj=150_000_000):
        with Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "normal.csv", 0.01) as sampler:
            normal = _sample(sampler, 1.0)
        with Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "stalled.csv", 0.01) as sampler:
            stalled = _sample(sampler, 1.0, stall_s=0.4)
    samples = load_samples(tmp_path / "normal.csv")
    assert samples.shortest_wrap_s == pytest.approx(0.3)
    report, _ = run_energy(samples, normal, passes=1, images_per_pass=1)
    assert report.gap_limit_s == pytest.approx(0.15) and report.largest_gap_s < 0.15
    assert report.cpu_j == pytest.approx(500.0 * normal.seconds, abs=50.0)  # a wrap every 0.3 s, all seen
    samples = load_samples(tmp_path / "stalled.csv")
    gap = largest_gap_s(samples.t_s, stalled)
    assert 0.4 <= gap < 0.5, f"a {gap:.3f} s gap, not the 0.4..0.5 s that the stall limit alone lets through"
    lost = counter_energy_j(samples.t_s, samples.columns["cpu_package0_energy_j"], stalled) - 500.0 * stalled.seconds
    assert lost == pytest.approx(-150.0, abs=50.0)  # one whole wrap, silently
    with pytest.raises(MeterError, match=r"can wrap in 0\.30 s"):
        run_energy(samples, stalled, passes=1, images_per_pass=1)
