"""`edl score` end to end on the CPU with real onnxruntime: every contract form, exact accuracy, real meters."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import onnx
import pytest
from builders import (
    PowercapTree,
    conv_model,
    fast_config,
    oracle_images,
    oracle_model,
    passes_lasting,
    save,
    save_npz,
)
from onnx import TensorProto, helper, numpy_helper

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.errors import DataError, MeterError, ProviderError, SubmissionError
from evaluator.events import Event, ImagesDone, PhaseFinished, PhaseStarted, Waiting, json_lines, read_json_lines
from evaluator.report.integrity import seal_holds
from evaluator.report.reader import read_result
from evaluator.report.records import DataRecord
from evaluator.report.result import RESULT_NAME
from evaluator.runtime.providers import cuda_unavailable_reason
from evaluator.scoring.pipeline import score


@pytest.fixture
def dataset(tmp_path):
    images, labels = oracle_images(1000, correct=917)
    return save_npz(tmp_path / "set.npz", images, labels)


@pytest.mark.parametrize(
    ("dtype", "layout", "output", "batch", "batch_size", "padding", "batches"),
    [
        ("float32", "NCHW", "scores", "N", 1000, 0, 1),
        ("float16", "NHWC", "scores", "N", 300, 0, 4),  # dynamic batch: a last partial batch of 100
        ("uint8", "NHWC", "labels", 300, None, 200, 4),  # fixed batch: the last batch padded
        ("uint8", "NCHW", "scores", "N", 7, 0, 143),
        ("float32", "NHWC", "labels", 1000, None, 0, 1),
    ],
)
def test_exact_accuracy_in_every_form(tmp_path, dataset, dtype, layout, output, batch, batch_size, padding, batches):
    model = oracle_model(tmp_path / "m.onnx", dtype, layout, output, batch=batch)
    result = score(model, fast_config(dataset, runtime=RuntimeConfig(batch_size=batch_size), audit=False),
                   tmp_path / "out")
    assert result.correct == 917 and result.accuracy == pytest.approx(0.917)
    assert result.category == pytest.approx(0.90)
    run = result.runs[0]
    assert result.padded_images == padding and -(-(1000 + padding) // result.batch_size) == batches
    assert run.prediction_mismatch_passes == []
    on_disk = read_result(tmp_path / "out" / RESULT_NAME)
    assert on_disk == result and seal_holds(on_disk)
    assert on_disk.schema_version == 3 and on_disk.config.runtime.batch_size == batch_size
    assert result.provider.name == "cpu" and result.provider.nodes_off_provider == []


def test_missing_meters_are_null_with_reasons_never_zero(tmp_path, dataset):
    result = score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, audit=False), tmp_path / "o")
    energy = result.runs[0].energy
    assert result.total_j is None and energy.gpu_j is None and energy.cpu_j is None
    assert "NVML cannot initialise" in energy.missing_domains["gpu"]
    assert "does not exist" in energy.missing_domains["cpu"]
    assert result.energy.reason.startswith("gpu: NVML cannot initialise")


def test_no_meter_says_so(tmp_path, dataset):
    result = score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, enabled=False, audit=False), tmp_path / "o")
    assert result.total_j is None and result.energy.reason == "metering was switched off (--no-meter)"
    assert result.runs[0].samples is None and not (tmp_path / "o" / "samples-1.csv").exists()


def test_metadata_batch_size_is_used(tmp_path, dataset):
    result = score(oracle_model(tmp_path / "m.onnx", metadata_batch=128),
                   fast_config(dataset, runtime=RuntimeConfig(batch_size=999), audit=False), tmp_path / "o")
    assert (result.batch_size, result.batch_size_rule) == (128, "metadata_props edl.batch_size")


def test_cuda_requested_but_unavailable_fails_loudly(tmp_path, dataset):
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here; the refusal path cannot be shown")
    with pytest.raises(ProviderError, match="--provider cuda was asked for"):
        score(oracle_model(tmp_path / "m.onnx"),
              fast_config(dataset, runtime=RuntimeConfig(provider="cuda"), audit=False),
              tmp_path / "out")
    assert not (tmp_path / "out" / RESULT_NAME).exists()


def test_invalid_submission_is_refused_before_anything_runs(tmp_path, dataset):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    with pytest.raises(SubmissionError, match="empty"):
        score(bad, fast_config(dataset, audit=False), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_other_data_than_the_batch_resolved_is_refused(tmp_path, dataset):
    other = DataRecord(fingerprint="0" * 64, images=1000, official=True, source="elsewhere")
    with pytest.raises(DataError, match="not the one the batch resolved"):
        score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, audit=False), tmp_path / "o", resolved_data=other)


def test_the_data_a_batch_resolved_is_recorded_as_it_resolved_it(tmp_path, dataset):
    """A Ray host gets the bytes in a temporary file it cannot verify; the same bytes are the driver's test set."""
    copy = save_npz(tmp_path / "host-copy.npz", *oracle_images(1000, correct=917))
    resolved = score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, audit=False), tmp_path / "driver").data
    assert resolved is not None and not resolved.official
    verified = dataclasses.replace(resolved, official=True, source="official download (md5 verified)")
    result = score(oracle_model(tmp_path / "m.onnx"), fast_config(copy, audit=False),
                   tmp_path / "o", resolved_data=verified)
    assert result.data == verified
    assert not any(w.startswith("data:") for w in result.warnings)


def test_runtime_output_shape_is_checked(tmp_path, dataset):
    """A model that declares (N, 10) but returns something else fails with the contract's words."""
    model = onnx.load(oracle_model(tmp_path / "m.onnx"))
    model.graph.initializer[3].CopyFrom(onnx.numpy_helper.from_array(np.array([-1, 5], np.int64), "shape"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "K"
    save(model, tmp_path / "lying.onnx")
    with pytest.raises(SubmissionError, match="contract needs"):
        score(tmp_path / "lying.onnx", fast_config(dataset, audit=False), tmp_path / "o")


def test_runtime_failure_is_a_submission_error(tmp_path, dataset):
    """Slices 7 values and reshapes them to rows of 10: valid when loaded, fails on a batch of 3."""
    model = onnx.load(oracle_model(tmp_path / "m.onnx"))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([1, 1, 7], np.int64), "ends"))
    save(model, tmp_path / "bad.onnx")
    assert check_submission(tmp_path / "bad.onnx").valid
    with pytest.raises(SubmissionError, match="onnxruntime failed while running the model"):
        score(tmp_path / "bad.onnx", fast_config(dataset, runtime=RuntimeConfig(batch_size=3), audit=False),
              tmp_path / "o")


def test_nondeterministic_model_reports_differing_passes(tmp_path, dataset):
    """Scores from RandomUniformLike: every pass predicts differently, and the result says so."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "a"], ["ten"]),
        helper.make_node("RandomUniformLike", ["ten"], ["y"]),
    ]
    inits = [onnx.numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("s", 0), ("e", 10), ("a", 1))]
    graph = helper.make_graph(nodes, "random", [x], [y], inits)
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "random.onnx")
    result = score(path, fast_config(dataset, passes=3, audit=False), tmp_path / "o")
    assert result.runs[0].prediction_mismatch_passes == [1, 2]
    assert any("predicted differently" in w for w in result.warnings)


@pytest.mark.slow  # a live sampler over a 2.5 s window and a plot: the end-to-end proof of the arithmetic
def test_score_with_fake_meters_reports_watts_times_seconds(tmp_path, fake_gpu, monkeypatch):
    """Counters advancing at known watts while edl score runs: joules = watts x seconds."""
    fake_gpu(watts=120.0, step_s=0.1)  # NVML-like 100 ms counter steps
    images, labels = oracle_images(1000, correct=950)
    data = save_npz(tmp_path / "d.npz", images, labels)
    model = conv_model(tmp_path / "m.onnx")
    passes = passes_lasting(model, images=1000, seconds=2.5)
    with PowercapTree(tmp_path / "pc", package_watts=[45.0, 30.0], dram_watts=6.0) as tree:
        monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
        result = score(model, fast_config(data, passes=passes, idle_s=1.0, plot=True, audit=False), tmp_path / "out")
    run = result.runs[0]
    energy, seconds = run.energy, run.seconds
    assert seconds > 1.5, f"{passes} passes lasted {seconds:.2f} s: the window is too short to test joules"
    # The tree's writer thread shares the GIL with the workload: a tick late at each edge (50 ms at least).
    rapl_rel = 0.02 + max(0.05, 2 * tree.lag_s()) / seconds
    assert energy.cpu_j == pytest.approx(75.0 * seconds, rel=rapl_rel)
    assert energy.dram_j == pytest.approx(12.0 * seconds, rel=rapl_rel)
    assert energy.gpu_j == pytest.approx(120.0 * seconds, rel=0.02 + 0.1 / seconds)
    assert result.total_j == energy.total_j == pytest.approx(energy.cpu_j + energy.gpu_j)
    assert energy.idle.watts["cpu"] == pytest.approx(75.0, rel=0.05)
    assert len(energy.passes_j) == passes
    assert run.fairness.gpu_start.identity.name == "Fake GPU" == run.host.gpu.name == result.gpu_model
    assert run.fairness.gpu_end.memory_used_mib == 1024
    assert (tmp_path / "out" / run.timeline.name).stat().st_size > 10_000


def test_sampler_killed_mid_run_invalidates_the_measurement(tmp_path, dataset, fake_gpu):
    fake_gpu()

    def kill_sampler() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.name == "edl-sampler":
                    time.sleep(0.5)
                    os.kill(child.pid, signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_sampler)
    killer.start()
    with pytest.raises(MeterError, match="died during the run"):
        score(conv_model(tmp_path / "m.onnx"), fast_config(dataset, passes=300, audit=False), tmp_path / "o")
    killer.join()
    assert not (tmp_path / "o" / RESULT_NAME).exists()


def test_exclusive_refuses_when_others_use_the_gpu(tmp_path, dataset, fake_gpu, monkeypatch):
    fake_gpu()
    monkeypatch.setenv("FAKE_NVML_PIDS", "4242")
    result = score(conv_model(tmp_path / "m.onnx"), fast_config(dataset, passes=1, audit=False), tmp_path / "o")
    assert any("pids [4242]" in w for w in result.warnings)
    with pytest.raises(MeterError, match="--exclusive refuses"):
        score(conv_model(tmp_path / "m.onnx"), fast_config(dataset, passes=1, exclusive=True, audit=False),
              tmp_path / "o2")


def test_real_subset_with_oracle_labels(tmp_path, shared_data):
    """Real CIFAR-10 pixels through the pipeline: the fingerprint is stable and the count exact."""
    with np.load(shared_data) as archive:
        images, labels = archive["x"].copy(), archive["y"]
    images[:, 0, :10, 0] = 0
    images[np.arange(1000), 0, labels, 0] = 255
    path = save_npz(tmp_path / "marked.npz", images, labels)
    result = score(oracle_model(tmp_path / "m.onnx", "uint8", "NHWC"), fast_config(path, audit=False), tmp_path / "o")
    assert result.correct == 1000 and result.category == pytest.approx(0.99)


WORK_W, IDLE_W = 300.0, 80.0


class ProfileProgress:
    """A silent progress sink that tells the fake GPU's profile when a wait begins: it idles from then on."""

    def __init__(self, profile: object) -> None:
        self.profile = profile

    def __call__(self, event: Event) -> None:
        if isinstance(event, Waiting) or (isinstance(event, PhaseStarted) and event.phase.startswith("idle baseline")):
            self.profile.set(IDLE_W)


@pytest.fixture
def profiled_gpu(tmp_path, fake_gpu, monkeypatch):
    """A fake GPU at WORK_W from the start of a pass (priming, warm-up, measured, trailing) until a wait begins or
    the meter stops, else at IDLE_W: the passes run back to back, without idle gaps between them."""
    from fake_pynvml import PowerProfile

    from evaluator.power.meter import Meter
    from evaluator.runtime.runner import BoundRunner

    def configure(step_s: float = 0.0) -> ProfileProgress:
        fake_gpu(watts=IDLE_W, step_s=step_s)
        profile = PowerProfile(str(tmp_path / "profile.txt"))
        monkeypatch.setenv("FAKE_NVML_PROFILE", profile.path)
        real_pass, real_stop = BoundRunner._pass, Meter.stop

        def metered_pass(self: BoundRunner) -> np.ndarray:
            profile.set(WORK_W)
            return real_pass(self)

        def stop(self: Meter):
            profile.set(IDLE_W)
            return real_stop(self)

        monkeypatch.setattr(BoundRunner, "_pass", metered_pass)
        monkeypatch.setattr(Meter, "stop", stop)
        return ProfileProgress(profile)

    return configure


def test_idle_gpu_watts_do_not_count_the_priming_pass_s_last_counter_step(tmp_path, profiled_gpu):
    """NVML steps every 100 ms and the idle window opens ms after the priming pass: the first step inside it
    carries up to 100 ms of priming work (+0 to +18 % on a 1.5 s idle before the fix)."""
    progress = profiled_gpu(step_s=0.1)
    images, labels = oracle_images(1000, correct=950)
    data = save_npz(tmp_path / "d.npz", images, labels)
    result = score(conv_model(tmp_path / "m.onnx"), fast_config(data, passes=3, idle_s=1.5, audit=False),
                   tmp_path / "out", sink=progress)
    idle = result.runs[0].energy.idle
    assert idle is not None and idle.watts["gpu"] == pytest.approx(IDLE_W, rel=0.02)


def test_the_last_short_passes_are_not_read_towards_the_idle_after_the_work(tmp_path, profiled_gpu):
    """Passes of ~5-20 ms sampled every 50 ms: without work after the window, the last read low (-18 %, -36 %)."""
    progress = profiled_gpu()
    images, labels = oracle_images(200, correct=190)
    data = save_npz(tmp_path / "d.npz", images, labels)
    config = fast_config(data, passes=40, sample_period_ms=50.0, audit=False)
    run = score(conv_model(tmp_path / "m.onnx"), config, tmp_path / "out", sink=progress).runs[0]
    passes = [w for w in run.windows if w.name.startswith("pass")]
    ratios = [j / (WORK_W * (w.end_s - w.start_s)) for j, w in zip(run.energy.passes_j, passes, strict=True)]
    assert run.energy.passes_j_method["gpu"] == "integrated instant power"
    assert min(ratios) > 0.97, [round(r, 3) for r in ratios]
    assert any(w.name == "trail" for w in run.windows)


def test_no_meter_skips_the_idle_wait_and_says_so(tmp_path, dataset):
    """No NVML, no RAPL: nothing would measure the idle baseline; the wait is skipped (11.6 s -> ~1 s)."""
    events: list[Event] = []
    start = time.monotonic()
    result = score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, passes=1, idle_s=10.0, audit=False),
                   tmp_path / "o",
                   events.append)
    assert time.monotonic() - start < 8.0
    idle = result.runs[0].energy.idle
    assert idle is not None and idle.total_w is None and idle.reason.startswith("not measured: there is no meter")
    assert PhaseStarted("idle baseline skipped: no meter (no NVML, no RAPL)") in events
    assert not any(isinstance(event, Waiting) for event in events)
    assert not any(name == "trail" for name in (w.name for w in result.runs[0].windows))


def test_the_cool_down_and_idle_waits_count_down_their_time_left(tmp_path, dataset, fake_gpu):
    fake_gpu(temps="60,60,60,55,50,41")
    events: list[Event] = []
    config = fast_config(dataset, passes=1, idle_s=1.0, cooldown_s=10.0, target_temp_c=40.0, audit=False)
    score(oracle_model(tmp_path / "m.onnx"), config, tmp_path / "o", events.append)
    waits = [event for event in events if isinstance(event, Waiting)]
    assert [w.waiting_for for w in waits][:1] == ["cooldown"] and waits[0].seconds_left == 10.0
    assert waits[0].detail == "GPU at 60 C"
    cooling = [w.seconds_left for w in waits if w.waiting_for == "cooldown"]
    idling = [w.seconds_left for w in waits if w.waiting_for == "idle_baseline"]
    assert len(cooling) >= 3 and cooling == sorted(cooling, reverse=True)  # a poll a second, the time left falling
    assert idling[0] == pytest.approx(1.0, abs=0.05) and idling[-1] == 0.0 and len(idling) >= 2
    first_idle = next(i for i, w in enumerate(events) if isinstance(w, Waiting) and w.waiting_for == "idle_baseline")
    assert all(w.waiting_for == "cooldown" for w in waits if events.index(w) < first_idle)  # cool-down, then idle


def test_a_scoring_tells_each_phase_its_seconds_and_the_passes_done_and_the_stream_stores_as_json_lines(
        tmp_path, dataset):
    """The measured phase counts passes as well as images (a web page shows "pass 3 of 5"); every phase that
    starts finishes with its seconds; the whole stream survives a round trip through a JSON-lines file."""
    stored = tmp_path / "events.jsonl"
    with stored.open("w") as stream:
        score(oracle_model(tmp_path / "m.onnx"), fast_config(dataset, passes=3), tmp_path / "o", json_lines(stream))
    events = list(read_json_lines(stored.read_text().splitlines()))
    started = [e.phase for e in events if isinstance(e, PhaseStarted)]
    finished = {e.phase: e.seconds for e in events if isinstance(e, PhaseFinished)}
    assert started == ["check", "data", "session", "warmup", "pass", "audit"]
    assert set(finished) == set(started) and all(seconds >= 0 for seconds in finished.values())
    assert PhaseStarted("pass", 3 * 1000, 3) in events
    passes = [e for e in events if isinstance(e, ImagesDone) and e.phase == "pass"]
    assert passes == [ImagesDone("pass", n * 1000, 3000, n, 3) for n in (1, 2, 3)]
    assert events.index(passes[-1]) < events.index(PhaseFinished("pass", finished["pass"]))
