"""Runtime settings: pinned, mapped to provider options, recorded; providers never substituted silently."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from builders import oracle_images, oracle_model, save_npz

from evaluator.errors import ProviderError
from evaluator.runtime import (
    BoundRunner,
    RuntimeSettings,
    create_session,
    make_batches,
    tensorrt_unavailable_reason,
)
from evaluator.submission import check_submission


def test_cuda_options_carry_every_pinned_setting():
    settings = RuntimeSettings(gpu=2, prefer_nhwc=True, cuda_graph=True, cudnn_conv_algo_search="HEURISTIC")
    options = settings.cuda_options()
    assert options["device_id"] == "2" and options["prefer_nhwc"] == "1" and options["enable_cuda_graph"] == "1"
    assert options["cudnn_conv_algo_search"] == "HEURISTIC" and options["gpu_mem_limit"] == str(32 << 30)
    assert RuntimeSettings().cuda_options()["enable_cuda_graph"] == "1"  # graphs by default
    plain = RuntimeSettings(prefer_nhwc=False, cuda_graph=False).cuda_options()
    assert plain["prefer_nhwc"] == "0" and plain["enable_cuda_graph"] == "0"


def test_tensorrt_options_put_the_engine_cache_where_asked(tmp_path):
    options = RuntimeSettings(gpu=1, trt_cache_dir=str(tmp_path)).tensorrt_options()
    assert options["trt_engine_cache_enable"] == "1" and options["trt_engine_cache_path"] == str(tmp_path)
    assert options["device_id"] == "1"


def test_tensorrt_requested_without_tensorrt_is_refused(tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is installed here; the refusal cannot be shown")
    with pytest.raises(ProviderError, match="--provider tensorrt was asked for"):
        create_session(oracle_model(tmp_path / "m.onnx"), RuntimeSettings(provider="tensorrt"))


def test_unknown_provider_is_refused(tmp_path):
    with pytest.raises(ProviderError, match="unknown provider"):
        create_session(oracle_model(tmp_path / "m.onnx"), RuntimeSettings(provider="directml"))


@pytest.mark.parametrize("output", ["scores", "labels"])
def test_preallocated_outputs_give_the_same_predictions(tmp_path, output):
    """The binding CUDA graphs need (fixed output buffers), exercised on the CPU."""
    model = oracle_model(tmp_path / "m.onnx", "uint8", "NHWC", output)
    contract = check_submission(model).contract
    images, labels = oracle_images(700, correct=650)
    batches, _ = make_batches(images, contract, 300)
    session, info = create_session(model, RuntimeSettings(provider="cpu"))
    dynamic = BoundRunner(session, contract, batches, info, 0, 700).run_pass()
    static = BoundRunner(session, contract, batches, info, 0, 700, static_outputs=True)
    first, second = static.run_pass(), static.run_pass()
    np.testing.assert_array_equal(dynamic, first)
    np.testing.assert_array_equal(first, second)
    assert int((first == labels).sum()) == 650


def test_settings_are_recorded_in_the_result(tmp_path):
    images, labels = oracle_images(200, correct=200)
    data = save_npz(tmp_path / "d.npz", images, labels)
    run = subprocess.run([sys.executable, "-m", "evaluator", "score", str(oracle_model(tmp_path / "m.onnx")),
                          "--data", str(data), "--passes", "1", "--idle-seconds", "0", "--cooldown", "0",
                          "--no-prefer-nhwc", "--cudnn-search", "HEURISTIC", "--no-tf32", "--no-overlap-batches",
                          "--out", str(tmp_path / "o"),
                          "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    settings = json.loads(run.stdout)["settings"]
    assert (settings["prefer_nhwc"], settings["cudnn_search"], settings["tf32"], settings["cuda_graph"],
            settings["overlap_batches"]) == (False, "HEURISTIC", False, True, False)
    bad = subprocess.run([sys.executable, "-m", "evaluator", "score", str(tmp_path / "m.onnx"), "--data", str(data),
                          "--cudnn-search", "FASTEST"], capture_output=True, text=True)
    assert bad.returncode == 1 and "choose EXHAUSTIVE" in bad.stderr


def test_tune_searches_batch_sizes_and_measures_the_winner(tmp_path, monkeypatch):
    from builders import PowercapTree, conv_model

    from evaluator.score import ScoreOptions, score

    images, labels = oracle_images(2000, correct=2000)
    data = save_npz(tmp_path / "d.npz", images, labels)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[60.0]):
        result = score(conv_model(tmp_path / "m.onnx"), ScoreOptions(
            data=data, out_dir=tmp_path / "o", passes=3, idle_seconds=0, cooldown_seconds=0, plot=False,
            provider="cpu", tune=True, tune_seconds=0.3))
    tuning = result["tuning"]
    assert tuning["criterion"] == "joules_per_image"
    assert [c["batch_size"] for c in tuning["candidates"]] == [250, 500, 1000, 2000]
    best = min(tuning["candidates"], key=lambda c: c["joules_per_image"])
    assert tuning["winner"]["batch_size"] == best["batch_size"] == result["batch_size"]
    assert result["batch_size_rule"] == "--tune" and result["settings"]["tune"] is True
    assert all(c["joules_per_image"] > 0 for c in tuning["candidates"])


def test_tune_respects_a_fixed_batch_and_falls_back_to_time_without_meters(tmp_path):
    from evaluator.score import ScoreOptions, score

    images, labels = oracle_images(600, correct=600)
    result = score(oracle_model(tmp_path / "m.onnx", batch=200), ScoreOptions(
        data=save_npz(tmp_path / "d.npz", images, labels), out_dir=tmp_path / "o", passes=1, idle_seconds=0,
        cooldown_seconds=0, plot=False, provider="cpu", tune=True, tune_seconds=0.1))
    assert result["tuning"]["criterion"] == "seconds_per_image"
    assert [c["batch_size"] for c in result["tuning"]["candidates"]] == [200]
    assert result["batch_size_rule"] == "fixed batch dimension in the graph"


def test_the_search_space_on_cuda_starts_at_the_defaults_and_covers_every_setting(tmp_path):
    from evaluator.score import ScoreOptions
    from evaluator.tune import search_space

    contract = check_submission(oracle_model(tmp_path / "m.onnx")).contract
    start, dimensions = search_space(contract, ScoreOptions(provider="cuda", cudnn_search="DEFAULT"))
    assert (start.batch_size, start.prefer_nhwc, start.cuda_graph, start.cudnn_search) == (250, True, True, "DEFAULT")
    assert dict(dimensions) == {"batch_size": (250, 500, 1000, 2000), "prefer_nhwc": (True, False),
                                "cuda_graph": (True, False), "cudnn_search": ("DEFAULT", "EXHAUSTIVE", "HEURISTIC")}
    cpu_start, cpu_dimensions = search_space(contract, ScoreOptions(provider="cpu"))
    assert [name for name, _ in cpu_dimensions] == ["batch_size"] and cpu_start.cuda_graph is False


def test_coordinate_search_keeps_the_best_value_of_each_setting_in_turn():
    from evaluator.tune import Candidate, coordinate_search

    def cost(c: Candidate) -> float:  # NHWC helps, graphs help only in NHWC, batch 500 is best, HEURISTIC fails
        calls.append(c)
        if c.cudnn_search == "HEURISTIC":
            return float("inf")
        graph_gain = 2 if c.cuda_graph and c.prefer_nhwc else 0
        return abs(c.batch_size - 500) / 100 + (0 if c.prefer_nhwc else 3) - graph_gain

    calls: list[Candidate] = []
    dimensions = [("batch_size", (250, 500, 1000, 2000)), ("prefer_nhwc", (True, False)),
                  ("cuda_graph", (True, False)), ("cudnn_search", ("EXHAUSTIVE", "HEURISTIC"))]
    best = coordinate_search(Candidate(1000, False, False, "EXHAUSTIVE"), dimensions, cost)
    assert best == Candidate(500, True, True, "EXHAUSTIVE")
    assert len(calls) == len(set(calls)) == 7  # 4 batch sizes, then one new value of each switch


def test_a_graph_capture_that_fails_is_retried_without_graphs_and_said_so(tmp_path):
    import onnx
    from onnx import numpy_helper

    from evaluator.errors import SubmissionError
    from evaluator.runtime import prime_runner

    good = oracle_model(tmp_path / "m.onnx")
    contract = check_submission(good).contract
    images, labels = oracle_images(500, correct=480)
    batches, _ = make_batches(images, contract, 250)
    session, info = create_session(good, RuntimeSettings(provider="cpu"))
    info.cuda_graph = True  # as CUDA would accept it: the runner primes three runs per graph id
    runner = prime_runner(good, session, info, contract, batches, RuntimeSettings(provider="cpu"), 500)
    assert runner.graphs and "capture failed" not in info.selection
    assert int((runner.run_pass() == labels).sum()) == 480

    model = onnx.load(good)  # a Reshape that fails when run, as a kernel that cannot be captured does
    model.graph.initializer[3].CopyFrom(numpy_helper.from_array(np.array([7, -1], np.int64), "shape"))
    onnx.save(model, tmp_path / "bad.onnx")
    session, info = create_session(tmp_path / "bad.onnx", RuntimeSettings(provider="cpu"))
    info.cuda_graph = True
    with pytest.raises(SubmissionError, match="onnxruntime failed while running the model"):
        prime_runner(tmp_path / "bad.onnx", session, info, contract, batches, RuntimeSettings(provider="cpu"), 500)
    assert "CUDA graph capture failed" in info.selection and info.cuda_graph is False
