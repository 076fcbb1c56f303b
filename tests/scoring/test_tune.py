"""`edl score --tune`: the same bounded search for every submission, and the winner measured in full."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from builders import PowercapTree, conv_model, fast_config, oracle_images, oracle_model, save_npz

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.power.analysis import Window
from evaluator.power.sampler import SAMPLES_FORMAT
from evaluator.scoring.pipeline import score
from evaluator.scoring.tune import _window_joules, coordinate_search, decide, search_space

CPU = RuntimeConfig(provider="cpu")


@pytest.mark.slow  # the wiring: a real search, measured (the search and its rule are tested directly below)
def test_tune_searches_batch_sizes_in_interleaved_rounds_and_measures_the_winner(tmp_path, monkeypatch):
    images, labels = oracle_images(2000, correct=2000)
    data = save_npz(tmp_path / "d.npz", images, labels)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[60.0]):
        result = score(conv_model(tmp_path / "m.onnx"), fast_config(data, passes=3, runtime=CPU, tune=True,
                                                                    tune_window_s=0.3, audit=False), tmp_path / "o")
    tuning = result.tuning
    assert tuning.criterion == "joules per image" and tuning.rounds == 2
    assert [c.batch_size for c in tuning.candidates] == [250, 500, 1000, 2000]
    assert all(len(c.rounds) == 2 and c.joules_per_image > 0 for c in tuning.candidates)
    (decision,) = tuning.decisions
    assert decision.setting == "batch_size" and decision.chosen == str(result.batch_size)
    assert tuning.winner.batch_size == result.batch_size
    assert result.batch_size_rule == "--tune" and result.config.tune is True
    # Changed exactly when the cheapest beat the default by more than the margin (the rounds' spread at least).
    start, _ = search_space(check_submission(tmp_path / "m.onnx").contract, CPU)
    default = next(c for c in tuning.candidates if c.batch_size == start.batch_size)
    cheapest = min(tuning.candidates, key=lambda c: c.joules_per_image)
    beaten = cheapest.joules_per_image < default.joules_per_image * (1 - decision.margin)
    assert decision.changed is beaten and decision.margin >= max(_spread(default), _spread(cheapest))
    assert result.batch_size == (cheapest if beaten else default).batch_size


def _spread(candidate) -> float:
    return (max(candidate.rounds) - min(candidate.rounds)) / candidate.joules_per_image


def test_tune_respects_a_fixed_batch_and_falls_back_to_time_without_meters(tmp_path):
    images, labels = oracle_images(600, correct=600)
    result = score(oracle_model(tmp_path / "m.onnx", batch=200),
                   fast_config(save_npz(tmp_path / "d.npz", images, labels), passes=1, runtime=CPU, tune=True,
                               tune_window_s=0.1, audit=False), tmp_path / "o")
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


def test_coordinate_search_measures_each_setting_together_and_needs_a_clear_win():
    def cost(c: RuntimeConfig) -> float:  # NHWC helps a lot, graphs help a little, batch 500 is best
        return 10 + abs((c.batch_size or 0) - 500) / 100 + (0 if c.prefer_nhwc else 3) - (0.01 if c.cuda_graph else 0)

    calls: list[list[RuntimeConfig]] = []

    def measure(candidates: list[RuntimeConfig]) -> dict[RuntimeConfig, list[float]]:
        calls.append(candidates)
        return {c: [cost(c), cost(c) * 1.001] for c in candidates}  # two rounds, 0.1 % apart

    dimensions = [("batch_size", (250, 500, 1000, 2000)), ("prefer_nhwc", (True, False)),
                  ("cuda_graph", (True, False))]
    start = RuntimeConfig(provider="cuda", batch_size=1000, prefer_nhwc=False, cuda_graph=False)
    best, decisions = coordinate_search(start, dimensions, measure, bound=0.05)
    # The graphs. 0.1 % gain is under the 5 % bound: the incumbent (no graphs) stays.
    assert best == dataclasses.replace(start, batch_size=500, prefer_nhwc=True, cuda_graph=False)
    assert [(d.setting, d.chosen, d.changed) for d in decisions] == [
        ("batch_size", "500", True), ("prefer_nhwc", "True", True), ("cuda_graph", "False", False)]
    assert [len(c) for c in calls] == [4, 2, 2] and calls[0][0].batch_size == 1000  # the incumbent first
    assert decide(start, {start: [1.0, 1.0], dataclasses.replace(start, batch_size=500): [0.5, 1.4]}, 0.0)[0] == start


def test_a_tuning_round_across_a_sampler_stall_has_no_figure(tmp_path):
    """Tuning windows are reported too: the measured window's gap rule leaves a stalled round without joules."""
    t = np.concatenate([np.arange(0.0, 1.0, 0.01), np.arange(2.0, 3.0, 0.01)])  # a 1 s stall
    meta = {"format": SAMPLES_FORMAT, "period_s": 0.01, "shortest_wrap_s": None, "unavailable": {},
            "channels": [{"name": "cpu_package0_energy_j", "domain": "cpu", "kind": "energy_j", "note": ""}]}
    rows = [f"{x:.6f},{40 * x:.6f}" for x in t]
    path = tmp_path / "samples.csv"
    path.write_text("\n".join(["# " + json.dumps(meta), "t_s,cpu_package0_energy_j", *rows, "# end"]) + "\n")
    assert abs((_window_joules(path, Window("round", 0.2, 0.8)) or 0) - 24.0) < 1e-6
    assert _window_joules(path, Window("round", 0.5, 2.5)) is None

