"""Power sources, the spawn sampler and window arithmetic, on real files and a fake NVML."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from builders import PowercapTree, conv_model, oracle_images, passes_lasting, save_npz

from evaluator.errors import MeterError
from evaluator.power import default_specs
from evaluator.power.analysis import (
    Samples,
    Window,
    counter_energy_j,
    energy_report,
    integrated_power_j,
    largest_gap_s,
    load_samples,
)
from evaluator.power.base import MeterUnavailable
from evaluator.power.nvml import NvmlSource, NvmlSpec
from evaluator.power.rapl import RaplSource, RaplSpec
from evaluator.power.sampler import Sampler
from evaluator.score import ScoreOptions, score

# --- RAPL -----------------------------------------------------------------------------------------


def test_rapl_counts_each_package_once_and_dram_apart(tmp_path):
    PowercapTree(tmp_path / "powercap", package_watts=[50.0, 70.0], dram_watts=10.0)
    source = RaplSource(tmp_path / "powercap")
    names = [c.name for c in source.channels()]
    assert names == ["cpu_package0_energy_j", "dram_dram0_energy_j", "cpu_package1_energy_j", "dram_dram1_energy_j"]
    assert [c.domain for c in source.channels()] == ["cpu", "dram", "cpu", "dram"]


def test_rapl_unwraps_the_counter(tmp_path):
    tree = PowercapTree(tmp_path / "pc", package_watts=[1.0], max_range_uj=1_000_000)
    tree.write(0.9)  # 900,000 uJ
    source = RaplSource(tmp_path / "pc")
    tree.write(1.5)  # wrapped: 500,000 uJ on the counter
    tree.write(1.5)
    assert source.read()[0] == pytest.approx(0.6)
    tree.write(2.2)  # 200,000 after a second wrap... 1.5 -> 2.2 is 0.7 J
    assert source.read()[0] == pytest.approx(1.3)


def test_rapl_absent_tree_is_unavailable_with_reason(tmp_path):
    with pytest.raises(MeterUnavailable, match="EDL_POWERCAP_ROOT"):
        RaplSource(tmp_path / "nothing")


def _open_rapl_as_nobody(root: Path) -> str:
    """Open a RaplSource in a forked child that dropped root (root reads any file, so tests run as nobody)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no exec, so no interpreter path needs to be reachable by nobody
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                RaplSource(root)
                message = "opened"
            except MeterUnavailable as exc:
                message = str(exc)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        return pipe.read()


def test_rapl_root_only_file_is_unavailable_with_reason():
    """Linux 5.10+ makes energy_uj readable by root only; as an ordinary user the source says so."""
    root = Path(tempfile.mkdtemp(prefix="edl-rapl-"))
    try:
        os.chmod(root, 0o755)
        PowercapTree(root / "pc", package_watts=[10.0])
        for path in (root / "pc").rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        assert _open_rapl_as_nobody(root / "pc") == "opened"
        os.chmod(root / "pc" / "intel-rapl:0" / "energy_uj", 0o400)
        assert "readable only by root" in _open_rapl_as_nobody(root / "pc")
    finally:
        shutil.rmtree(root)


# --- NVML (fake module) ------------------------------------------------------------------------------


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


# --- window arithmetic --------------------------------------------------------------------------------


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
    report = energy_report(samples, Window("measured", 11.0, 19.0), passes=4, images_per_pass=100,
                           idle=Window("idle", 1.0, 9.0))
    assert report["gpu_j"] == pytest.approx(2400.0)
    assert report["cpu_j"] == pytest.approx(320.0)
    assert report["total_j"] == pytest.approx(2720.0)
    assert report["per_pass_j"] == pytest.approx(680.0)
    assert report["per_image_j"] == pytest.approx(6.8)
    assert report["dram_j"] is None and "dram" in report["domains"]["dram"]["reason"]
    assert report["idle"]["total_w"] == pytest.approx(120.0)
    assert report["above_idle_j"] == pytest.approx(2720.0 - 120.0 * 8)
    assert report["domains"]["gpu"]["counter_vs_integral"] == pytest.approx(0.0, abs=1e-9)
    assert report["warnings"] and "under 10 s" in report["warnings"][0]


def test_energy_report_with_no_sources_is_null_not_zero():
    t = np.arange(0.0, 2.0, 0.01)
    samples = _samples({}, t, [], {"nvml": "no GPU", "rapl": "no RAPL"})
    report = energy_report(samples, Window("measured", 0.5, 1.5), passes=1, images_per_pass=10)
    assert report["total_j"] is None and report["per_pass_j"] is None
    assert report["missing_domains"] == {"gpu": "no GPU", "cpu": "no RAPL"}


def test_stalled_sampler_invalidates_the_measurement():
    t = np.concatenate([np.arange(0.0, 1.0, 0.01), np.arange(3.0, 4.0, 0.01)])
    samples = _samples({"cpu_package0_energy_j": 10 * t}, t,
                       [{"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j"}])
    with pytest.raises(MeterError, match="gap"):
        energy_report(samples, Window("measured", 0.5, 3.5), passes=1, images_per_pass=1)


# --- the spawn sampler --------------------------------------------------------------------------------


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
    report = energy_report(samples, window, passes=1, images_per_pass=1)
    assert report["gpu_j"] == pytest.approx(200.0 * window.seconds, rel=0.02)
    assert report["cpu_j"] == pytest.approx(35.0 * window.seconds, rel=0.02)
    assert report["dram_j"] == pytest.approx(5.0 * window.seconds, rel=0.02)


def test_killed_sampler_makes_the_measurement_invalid(tmp_path):
    sampler = Sampler([RaplSpec(root=str(tmp_path / "none")), NvmlSpec((0,), "fake_pynvml")], tmp_path / "s.csv")
    sampler.start()
    sampler._process.kill()
    sampler._process.join()
    with pytest.raises(MeterError, match="died"):
        sampler.stop()
    assert not load_samples(tmp_path / "s.csv").complete


def test_score_with_fake_meters_reports_watts_times_seconds(tmp_path, fake_gpu, monkeypatch):
    """The 'shows' check: counters advancing at known watts while edl score runs."""
    fake_gpu(watts=120.0, step_s=0.1)  # NVML-like 100 ms counter steps
    images, labels = oracle_images(1000, correct=950)
    data = save_npz(tmp_path / "d.npz", images, labels)
    model = conv_model(tmp_path / "m.onnx")
    passes = passes_lasting(model, images=1000, seconds=2.5)
    with PowercapTree(tmp_path / "pc", package_watts=[45.0, 30.0], dram_watts=6.0):
        monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
        result = score(model, ScoreOptions(
            data=data, out_dir=tmp_path / "out", passes=passes, idle_seconds=1.0, cooldown_seconds=0, plot=True))
    energy, seconds = result["energy"], result["seconds"]
    assert seconds > 1.5, f"{passes} passes lasted {seconds:.2f} s: the window is too short to test joules"
    # The tree's writer thread shares the GIL with the workload: a tick up to 50 ms late at an edge.
    rapl_rel = 0.02 + 0.05 / seconds
    assert energy["cpu_j"] == pytest.approx(75.0 * seconds, rel=rapl_rel)
    assert energy["dram_j"] == pytest.approx(12.0 * seconds, rel=rapl_rel)
    assert energy["gpu_j"] == pytest.approx(120.0 * seconds, rel=0.02 + 0.1 / seconds)
    assert energy["total_j"] == pytest.approx(energy["cpu_j"] + energy["gpu_j"])
    assert energy["idle"]["watts"]["cpu"] == pytest.approx(75.0, rel=0.05)
    assert len(energy["passes_j"]) == passes
    assert result["fairness"]["gpu_start"]["name"] == "Fake GPU"
    assert result["fairness"]["gpu_end"]["memory_used_mib"] == 1024
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 10_000


def test_sampling_slower_than_the_counter_wrap_is_refused(tmp_path):
    PowercapTree(tmp_path / "pc", package_watts=[10.0], max_range_uj=50_000_000)  # wraps in 0.1 s at 500 W
    with pytest.raises(MeterError, match="too slow"):
        Sampler([RaplSpec(root=str(tmp_path / "pc"))], tmp_path / "s.csv", period_s=0.06).start()


def test_node_placement_is_read_from_onnxruntime_log():
    from evaluator.runtime import _parse_placement

    lines = [
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp] Node placements",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp]  "
        "Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 20",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp]  "
        "Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
        "  Shape (/Shape)",
        "  Gather (/Gather_1)",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 something else]",
    ]
    counts, nodes = _parse_placement(lines)
    assert counts == {"CUDAExecutionProvider": 20, "CPUExecutionProvider": 2}
    assert nodes["CPUExecutionProvider"] == ["Shape (/Shape)", "Gather (/Gather_1)"]
    all_one, _ = _parse_placement(["[V:onnxruntime:] All nodes placed on [CUDAExecutionProvider]. Number of nodes: 7"])
    assert all_one == {"CUDAExecutionProvider": 7}


def test_cuda_visible_devices_maps_to_nvml_indices(monkeypatch):
    from evaluator.power.nvml import nvml_index

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert (nvml_index(0), nvml_index(1)) == (3, 1)
    assert default_specs((1,), "fake_pynvml")[0].gpu_indices == (1,)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_index(2) == 2
