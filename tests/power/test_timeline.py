"""The timeline picture: power of every source, or, with none, a note that nothing was measured and why."""

from __future__ import annotations

import time

import pytest

from evaluator.power.meter import Meter
from evaluator.power.timeline import plot_timeline, timeline_figure, unavailable_note


def _metered(tmp_path):
    meter = Meter(tmp_path / "samples.csv", (0,), 0.01)
    with meter:
        with meter.window("idle"):
            time.sleep(0.1)
        with meter.window("measured"):
            time.sleep(0.2)
        samples = meter.stop()
    assert samples is not None
    return samples, meter.windows


def test_no_meter_says_so_on_the_picture_with_the_reasons(tmp_path):
    samples, windows = _metered(tmp_path)  # the test environment has neither NVML nor RAPL
    assert samples.channels == [] and set(samples.unavailable) == {"nvml", "rapl"}
    note = unavailable_note(samples)
    assert note.startswith("No power meter was available: nothing was measured (this is not 0 W).")
    assert "NVML cannot initialise" in note and "no RAPL here" in note
    figure = timeline_figure(samples, windows, "m.onnx: power")
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.texts] == [note]
    assert list(axes.get_yticks()) == [] and axes.get_ylabel() == "", "no power axis that reads as 0 W"
    assert axes.get_title() == "m.onnx: power (no meter)" and not axes.lines
    path = plot_timeline(samples, windows, tmp_path / "timeline-1.png", "m.onnx: power")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_measured_source_is_drawn_in_watts_without_the_note(tmp_path, fake_gpu):
    fake_gpu(watts=80.0)
    samples, windows = _metered(tmp_path)
    assert samples.channels and unavailable_note(samples) == ""
    axes = timeline_figure(samples, windows, "m.onnx: power").axes[0]
    assert axes.get_ylabel() == "watts" and not axes.texts and axes.lines
    assert max(max(line.get_ydata()) for line in axes.lines) == pytest.approx(80.0, rel=0.05)
