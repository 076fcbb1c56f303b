"""GPU energy and power through a small fake of the pynvml functions edl uses."""

from __future__ import annotations

import time

import pytest

from evaluator.power.base import MeterUnavailable
from evaluator.power.meter import default_specs
from evaluator.power.nvml import NvmlSource


def test_nvml_counter_and_instant_power(fake_gpu):
    fake_gpu(watts=250.0)
    source = NvmlSource((0,), "fake_pynvml")
    assert [c.name for c in source.channels()] == ["gpu0_energy_j", "gpu0_power_w"]
    first = source.read()
    time.sleep(0.2)
    second = source.read()
    assert second[1] == pytest.approx(250.0)
    assert second[0] - first[0] == pytest.approx(250.0 * 0.2, rel=0.1)


def test_nvml_instant_unsupported_falls_back_to_average_and_says_so(fake_gpu):
    fake_gpu(mode="no_instant")
    source = NvmlSource((0,), "fake_pynvml")
    assert source.gpus[0].power_method == "average"
    assert "averaged" in source.channels()[1].note


def test_nvml_without_counter_integrates_power(fake_gpu):
    fake_gpu(mode="no_counter")
    source = NvmlSource((0,), "fake_pynvml")
    assert [c.name for c in source.channels()] == ["gpu0_power_w"]


def test_nvml_absent_or_wrong_index_is_unavailable(fake_gpu):
    with pytest.raises(MeterUnavailable, match="NVML cannot initialise"):
        NvmlSource((0,), "fake_pynvml")  # the autouse fixture makes the fake absent
    fake_gpu()
    with pytest.raises(MeterUnavailable, match="GPU 3 does not exist"):
        NvmlSource((3,), "fake_pynvml")


def test_cuda_visible_devices_maps_to_nvml_indices(monkeypatch):
    from evaluator.power.nvml import nvml_index

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert (nvml_index(0), nvml_index(1)) == (3, 1)
    assert default_specs((1,), "fake_pynvml")[0].gpu_indices == (1,)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_index(2) == 2
