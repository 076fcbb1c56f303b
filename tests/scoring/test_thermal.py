"""The cool-down: bounded, to a target temperature or until steady, and recorded."""

from __future__ import annotations

import pytest
from builders import conv_model, fast_config, oracle_images, save_npz

from evaluator.config import MeterConfig
from evaluator.events import Event
from evaluator.scoring.cooldown import GpuWatch, cool_down, settled
from evaluator.scoring.pipeline import score


def _dataset(tmp_path):
    images, labels = oracle_images(1000, correct=500)
    return save_npz(tmp_path / "d.npz", images, labels)


def test_cooldown_polls_until_the_target_band_and_records_where_it_started_and_ended(fake_gpu):
    fake_gpu(temps="70,66,61,55,49,44")
    slept: list[float] = []
    record = cool_down(GpuWatch(0), MeterConfig(cooldown_s=30, target_temp_c=47.0, temp_band_c=2.0),
                       sleep=slept.append)
    assert record.start_c == 70 and record.end_c == 49 and record.reached is True  # 49 is within 2 of 47
    assert slept == [1.0, 1.0, 1.0] and record.target_c == 47.0 and record.band_c == 2.0  # read 66, 61, 55, then 49


def test_a_cooldown_that_starts_in_the_band_does_not_wait(fake_gpu):
    fake_gpu(temps="45")
    slept: list[float] = []
    record = cool_down(GpuWatch(0), MeterConfig(cooldown_s=30, target_temp_c=50.0), sleep=slept.append)
    assert record.reached is True and slept == [] and record.waited_s == 0.0


def test_a_disabled_cooldown_reads_the_temperature_and_says_so(fake_gpu):
    fake_gpu(temps="70")
    told: list[Event] = []
    record = cool_down(GpuWatch(0), MeterConfig(cooldown_s=0, target_temp_c=50.0), told.append)
    assert record.skipped == "cool-down disabled" and record.start_c == 70 and told == []  # no countdown shown


@pytest.mark.slow
def test_cooldown_waits_for_the_target_temperature(tmp_path, fake_gpu):
    """The wiring: a scoring cools down after its first GPU reading and records it as a window of its own."""
    fake_gpu(temps="70,66,61,55,49,44")
    result = score(conv_model(tmp_path / "m.onnx"), fast_config(_dataset(tmp_path), passes=1, cooldown_s=30,
                                                                target_temp_c=50.0), tmp_path / "o")
    fairness = result.runs[0].fairness
    assert fairness.gpu_start.temperature_c == 70
    assert fairness.cooldown.reached is True and fairness.cooldown.start_c == 66 and fairness.cooldown.end_c == 49
    assert "cooldown" in [w.name for w in result.runs[0].windows]


def test_cooldown_is_bounded(fake_gpu):
    fake_gpu(temps="80,79,80,79,80,79,80,79,80")
    slept: list[float] = []
    record = cool_down(GpuWatch(0), MeterConfig(cooldown_s=0.05, target_temp_c=40.0), sleep=slept.append)
    assert record.reached is False and record.end_c in (79, 80) and record.start_c == 80
    assert 0.04 <= record.waited_s < 1.0 and set(slept) == {1.0}  # it polled once a second, and gave up in time


def test_without_a_gpu_the_cooldown_says_why(monkeypatch):
    record = cool_down(GpuWatch(0), MeterConfig())
    assert record.skipped.startswith("no GPU temperature: NVML cannot initialise") and record.waited_s == 0


def test_settled_means_steady_for_ten_seconds_or_within_the_band_of_a_target():
    steady = [(float(t), 40.0 + (t % 2) * 0.5) for t in range(12)]
    assert settled(steady, band_c=2.0, target_c=None)
    assert not settled(steady[:5], band_c=2.0, target_c=None)  # not yet 10 s of history
    assert not settled([(0.0, 40.0), (2.0, 43.0), (6.0, 45.0), (11.0, 45.0)], band_c=2.0, target_c=None)
    assert settled([(0.0, 51.5)], band_c=2.0, target_c=50.0) and not settled([(0.0, 52.5)], band_c=2.0,
                                                                               target_c=50.0)
