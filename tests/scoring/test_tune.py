"""`edl score --tune`: the same bounded search for every submission, and the winner measured in full."""

from __future__ import annotations

import dataclasses

from builders import PowercapTree, conv_model, fast_config, oracle_images, oracle_model, save_npz

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.scoring.score import score
from evaluator.scoring.tune import coordinate_search, search_space

CPU = RuntimeConfig(provider="cpu")


def test_tune_searches_batch_sizes_and_measures_the_winner(tmp_path, monkeypatch):
    images, labels = oracle_images(2000, correct=2000)
    data = save_npz(tmp_path / "d.npz", images, labels)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[60.0]):
        result = score(conv_model(tmp_path / "m.onnx"), fast_config(data, passes=3, runtime=CPU, tune=True,
                                                                    tune_window_s=0.3), tmp_path / "o")
    tuning = result.tuning
    assert tuning.criterion == "joules per image"
    assert [c.batch_size for c in tuning.candidates] == [250, 500, 1000, 2000]
    best = min(tuning.candidates, key=lambda c: c.joules_per_image)
    assert tuning.winner.batch_size == best.batch_size == result.batch_size
    assert result.batch_size_rule == "--tune" and result.config.tune is True
    assert all(c.joules_per_image > 0 for c in tuning.candidates)


def test_tune_respects_a_fixed_batch_and_falls_back_to_time_without_meters(tmp_path):
    images, labels = oracle_images(600, correct=600)
    result = score(oracle_model(tmp_path / "m.onnx", batch=200),
                   fast_config(save_npz(tmp_path / "d.npz", images, labels), passes=1, runtime=CPU, tune=True,
                               tune_window_s=0.1), tmp_path / "o")
    tuning = result.tuning
    assert tuning.criterion == "seconds per image (no meter)"
    assert [c.batch_size for c in tuning.candidates] == [200]
    assert result.batch_size_rule == "fixed batch dimension in the graph"


def test_the_search_space_on_cuda_starts_at_the_defaults_and_covers_every_setting(tmp_path):
    contract = check_submission(oracle_model(tmp_path / "m.onnx")).contract
    start, dimensions = search_space(contract, RuntimeConfig(provider="cuda", cudnn_search="DEFAULT"))
    assert (start.batch_size, start.prefer_nhwc, start.cuda_graph, start.cudnn_search) == (250, True, True, "DEFAULT")
    assert dict(dimensions) == {"batch_size": (250, 500, 1000, 2000), "prefer_nhwc": (True, False),
                                "cuda_graph": (True, False), "cudnn_search": ("DEFAULT", "EXHAUSTIVE", "HEURISTIC")}
    cpu_start, cpu_dimensions = search_space(contract, CPU)
    assert [name for name, _ in cpu_dimensions] == ["batch_size"] and cpu_start.cuda_graph is False


def test_coordinate_search_keeps_the_best_value_of_each_setting_in_turn():
    def cost(c: RuntimeConfig) -> float:  # NHWC helps, graphs help only in NHWC, batch 500 is best, HEURISTIC fails
        calls.append(c)
        if c.cudnn_search == "HEURISTIC":
            return float("inf")
        graph_gain = 2 if c.cuda_graph and c.prefer_nhwc else 0
        return abs((c.batch_size or 0) - 500) / 100 + (0 if c.prefer_nhwc else 3) - graph_gain

    calls: list[RuntimeConfig] = []
    dimensions = [("batch_size", (250, 500, 1000, 2000)), ("prefer_nhwc", (True, False)),
                  ("cuda_graph", (True, False)), ("cudnn_search", ("EXHAUSTIVE", "HEURISTIC"))]
    start = RuntimeConfig(provider="cuda", batch_size=1000, prefer_nhwc=False, cuda_graph=False)
    best = coordinate_search(start, dimensions, cost)
    assert best == dataclasses.replace(start, batch_size=500, prefer_nhwc=True, cuda_graph=True)
    assert len(calls) == len(set(calls)) == 7  # 4 batch sizes, then one new value of each switch
