"""The spawn sampler and the meter on real files and a fake NVML."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import fake_pynvml
import numpy as np
import pytest
from builders import PowercapTree

from evaluator.errors import MeterError
from evaluator.power.analysis import (
    AVERAGED_POWER_NOTE,
    Window,
    counter_energy_j,
    domain_reading,
    largest_gap_s,
    load_samples,
)
from evaluator.power.base import ENERGY, POWER
from evaluator.power.gpu import GpuIdentity
from evaluator.power.meter import Meter, default_specs
from evaluator.power.nvml import NvmlSpec
from evaluator.power.rapl import RaplSpec
from evaluator.power.sampler import SAMPLES_FORMAT, Sampler
from evaluator.report.energy import run_energy


def test_spawn_sampler_records_known_watts(tmp_path, fake_gpu):
    fake_gpu(watts=200.0)
    with PowercapTree(tmp_path / "pc", package_watts=[35.0], dram_watts=5.0) as tree:
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
    lag = 2 * tree.lag_s(window) + 0.01  # the tree's writer, late at both edges, and 10 ms more
    assert report.cpu_j == pytest.approx(35.0 * window.seconds, abs=35.0 * lag)
    assert report.dram_j == pytest.approx(5.0 * window.seconds, abs=5.0 * lag)


def test_ctrl_c_while_the_sampler_starts_leaves_no_sampler(tmp_path, fake_gpu, monkeypatch):
    """The sampler is its own process: interrupted before it is ready, start() must not leave it behind."""
    fake_gpu(watts=100.0)
    monkeypatch.setenv("FAKE_NVML_INIT_DELAY_S", "30")  # never ready within the test

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    board = GpuIdentity(uuid=fake_pynvml.boards()[0].uuid, index=0)  # as the parent resolved it
    sampler = Sampler([NvmlSpec((board,), "fake_pynvml")], tmp_path / "s.csv")
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            sampler.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sampler._process is not None and sampler._process.exitcode is not None, "the sampler is still running"


def test_killed_sampler_makes_the_measurement_invalid(tmp_path):
    sampler = Sampler([RaplSpec(root=str(tmp_path / "none")), NvmlSpec(module="fake_pynvml", unavailable="no NVML")],
                      tmp_path / "s.csv")
    sampler.start()
    sampler._process.kill()
    sampler._process.join()
    with pytest.raises(MeterError, match="died"):
        sampler.stop()
    assert not load_samples(tmp_path / "s.csv").complete


def test_sampling_slower_than_the_counter_wrap_is_refused_with_the_real_numbers_and_the_rule(tmp_path):
    PowercapTree(tmp_path / "pc", package_watts=[10.0], max_range_uj=30_000_000)  # wraps in 0.06 s at 500 W
    with pytest.raises(MeterError) as refused:
        Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "s.csv", period_s=0.05).start()
    assert str(refused.value).endswith(
        "a 0.05 s sample period is too slow: a RAPL counter here can wrap in 0.06 s at 500 W, and the period must "
        "be under half that (0.03 s) so that no wrap goes unseen; use --sample-ms below 30")


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
    """At 500 W a 300 J counter wraps every 0.6 s: a 0.8 s stall, under the 1.0 s stall limit (20 periods of
    50 ms), loses one wrap (300 J) silently; the wrap limit (0.3 s) refuses it, and lets a normal run through."""
    watts = 500.0
    with PowercapTree(tmp_path / "pc", package_watts=[watts], max_range_uj=300_000_000) as tree:
        with Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "normal.csv", 0.05) as sampler:
            normal = _sample(sampler, 1.5)
        with Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "stalled.csv", 0.05) as sampler:
            stalled = _sample(sampler, 1.0, stall_s=0.8)
    samples = load_samples(tmp_path / "normal.csv")
    assert samples.shortest_wrap_s == pytest.approx(0.6)
    report, _ = run_energy(samples, normal, passes=1, images_per_pass=1)
    assert report.gap_limit_s == pytest.approx(0.3) and report.largest_gap_s < 0.3
    lag = tree.lag_s(normal)  # each edge's counter can be up to watts x lag behind
    assert report.cpu_j == pytest.approx(watts * normal.seconds, abs=watts * 2 * lag + 1.0)  # a wrap every 0.6 s
    samples = load_samples(tmp_path / "stalled.csv")
    gap = largest_gap_s(samples.t_s, stalled)
    assert 0.8 <= gap < 1.0, f"a {gap:.3f} s gap, not the 0.8..1.0 s that the stall limit alone lets through"
    lost = counter_energy_j(samples.t_s, samples.columns["cpu_package0_energy_j"], stalled) - watts * stalled.seconds
    assert lost == pytest.approx(-300.0, abs=watts * 2 * tree.lag_s(stalled) + 1.0)  # one whole wrap
    with pytest.raises(MeterError, match=r"can wrap in 0\.60 s"):
        run_energy(samples, stalled, passes=1, images_per_pass=1)


def _nvml_like_samples(path: Path, watts: float, power_note: str = "") -> Path:
    """A samples file as the sampler writes it, every 10 ms over 2 s: a GPU energy counter that steps every 100 ms
    (NVML's) and a power reading of ``watts`` (instant, or with nvml.py's note, the driver's running average)."""
    t = np.arange(0.0, 2.0, 0.01)
    counter = watts * np.floor(t / 0.1 + 1e-9) * 0.1
    meta = {"format": SAMPLES_FORMAT, "period_s": 0.01, "shortest_wrap_s": None, "unavailable": {},
            "channels": [{"name": "gpu0_energy_j", "domain": "gpu", "kind": ENERGY, "note": ""},
                         {"name": "gpu0_power_w", "domain": "gpu", "kind": POWER, "note": power_note}]}
    rows = [f"{x:.6f},{j:.6f},{watts:.6f}" for x, j in zip(t, counter, strict=True)]
    path.write_text("\n".join(["# " + json.dumps(meta), "t_s,gpu0_energy_j,gpu0_power_w", *rows, "# end"]) + "\n")
    return path


def test_per_pass_joules_come_from_instant_power_where_the_counter_steps_every_100_ms(tmp_path):
    """NVML's counter steps every 100 ms; passes of 15-60 ms read it -100 %..+500 % off, instant power exactly."""
    samples = load_samples(_nvml_like_samples(tmp_path / "s.csv", 200.0))
    measured = Window("measured", 0.2, 1.7)
    passes = [Window(f"pass{i}", start, start + length) for i, (start, length) in enumerate(_pass_edges(measured))]
    report, _ = run_energy(samples, measured, len(passes), 1, pass_windows=passes)
    assert report.passes_j_method == {"gpu": "integrated instant power"}
    assert report.sample_period_achieved_s == pytest.approx(0.01)
    assert report.passes_j == pytest.approx([200.0 * w.seconds for w in passes], rel=1e-6)
    counter = [domain_reading(samples, "gpu", w).joules / (200.0 * w.seconds) - 1 for w in passes]
    assert min(counter) < -0.5 and max(counter) > 0.5


def test_driver_averaged_power_leaves_a_stepping_counter_out_of_the_passes(tmp_path):
    samples = load_samples(_nvml_like_samples(tmp_path / "s.csv", 200.0, power_note=AVERAGED_POWER_NOTE))
    measured = Window("measured", 0.2, 1.2)
    passes = [Window(f"pass{i}", start, start + length) for i, (start, length) in enumerate(_pass_edges(measured))]
    report, warnings = run_energy(samples, measured, len(passes), 1, pass_windows=passes)
    assert report.passes_j_method["gpu"].startswith("left out: its energy counter moves only every 0.100 s")
    assert report.passes_j == [None] * len(passes) and report.gpu_j == pytest.approx(200 * measured.seconds, rel=0.2)
    assert any("per-pass joules leave out gpu" in w for w in warnings)


@pytest.mark.slow  # the wiring: the fake NVML's stepping counter and instant power, through a live sampler
def test_per_pass_joules_of_a_stepping_nvml_counter_come_from_instant_power(tmp_path, fake_gpu):
    """NVML's counter steps every 100 ms; passes of 15-60 ms read it -100 %..+500 % off, instant power exactly."""
    fake_gpu(watts=200.0, step_s=0.1)
    with Sampler(default_specs((0,), "fake_pynvml"), tmp_path / "s.csv", 0.01) as sampler:
        measured = _sample(sampler, 1.5)
    samples = load_samples(tmp_path / "s.csv")
    passes = [Window(f"pass{i}", start, start + length) for i, (start, length) in enumerate(_pass_edges(measured))]
    report, _ = run_energy(samples, measured, len(passes), 1, pass_windows=passes)
    assert report.passes_j_method == {"gpu": "integrated instant power"}
    assert report.sample_period_achieved_s == pytest.approx(0.01, rel=0.5)
    assert report.sample_period_p95_s >= report.sample_period_achieved_s
    errors = [j / (200.0 * w.seconds) - 1 for j, w in zip(report.passes_j, passes, strict=True)]
    assert max(abs(e) for e in errors) < 0.02
    counter = [domain_reading(samples, "gpu", w).joules / (200.0 * w.seconds) - 1 for w in passes]
    assert min(counter) < -0.5 and max(counter) > 0.5


@pytest.mark.slow  # the wiring: nvml.py notes driver-averaged power and the sampler records the note
def test_driver_averaged_power_is_not_instant_power_for_passes(tmp_path, fake_gpu):
    fake_gpu(watts=200.0, step_s=0.1, mode="no_instant")
    with Sampler(default_specs((0,), "fake_pynvml"), tmp_path / "s.csv", 0.01) as sampler:
        measured = _sample(sampler, 1.0)
    passes = [Window(f"pass{i}", start, start + length) for i, (start, length) in enumerate(_pass_edges(measured))]
    report, warnings = run_energy(load_samples(tmp_path / "s.csv"), measured, len(passes), 1, pass_windows=passes)
    assert report.passes_j_method["gpu"].startswith("left out: its energy counter moves only every 0.1")
    assert report.passes_j == [None] * len(passes) and report.gpu_j == pytest.approx(200 * measured.seconds, rel=0.2)
    assert any("per-pass joules leave out gpu" in w for w in warnings)


def _pass_edges(window: Window) -> list[tuple[float, float]]:
    """Consecutive passes of 15, 30 and 60 ms filling the window."""
    edges, t, lengths = [], window.start_s, (0.015, 0.03, 0.06)
    while t + lengths[len(edges) % 3] <= window.end_s:
        edges.append((t, lengths[len(edges) % 3]))
        t += edges[-1][1]
    return edges
