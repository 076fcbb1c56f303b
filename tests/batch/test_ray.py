"""score-dir on Ray: a simulated cluster of two hosts, one fake GPU kind each, scoring real models on the CPU."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from builders import fast_config

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, RuntimeConfig
from evaluator.report.leaderboard import load_results, rank_by_gpu
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytestmark = pytest.mark.slow  # a Ray instance per module: seconds to start, a child per scoring


CPU = RuntimeConfig(provider="cpu")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, two_hosts):
    made, _ = two_hosts(tmp_path_factory.mktemp("hosts"))
    yield made
    made.shutdown()


def _windows_by_host(out: Path, summary) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for item in summary.submissions:
        if item.outcome != "scored":
            continue
        runs = {run.index: run for run in read_result(out / item.name / RESULT_NAME).runs}
        for place in item.places:
            window = next(w for w in runs[place.index].windows if w.name == "measured")
            spans.setdefault(place.host, []).append((window.start_s, window.end_s))
    return spans


def test_ray_scores_as_the_local_backend_does_one_scoring_per_host(tmp_path, models, cluster):
    data, subs = models
    config = fast_config(data, passes=20, runtime=CPU)
    score_directory(subs, tmp_path / "local", config)
    remote = score_directory(subs, tmp_path / "ray", config, BatchConfig(backend="ray", ray_address=cluster.address))
    assert remote.backend == "ray" and set(remote.hosts) == {"host-a", "host-b"}
    for name in ("plain", "busy"):
        here, there = read_result(tmp_path / "local" / name), read_result(tmp_path / "ray" / name)
        assert there.correct == here.correct == 380 and there.audit.correct == here.audit.correct
        assert there.config == config and there.model.path == str(Path("..") / ".." / "subs" / f"{name}.onnx")
    assert "not an ONNX model" in read_result(tmp_path / "ray" / "broken").reason
    for host, spans in _windows_by_host(tmp_path / "ray", remote).items():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans)), host


def test_every_gpu_kind_gives_one_result_per_kind_ranked_apart(tmp_path, models, cluster):
    data, subs = models
    (subs / "broken.onnx").unlink()
    summary = score_directory(subs, tmp_path / "out", fast_config(data, passes=5, runtime=CPU),
                              BatchConfig(backend="ray", ray_address=cluster.address, every_gpu_kind=True))
    names = sorted(item.name for item in summary.submissions)
    assert names == ["busy@fake-a100", "busy@fake-h200", "plain@fake-a100", "plain@fake-h200"]
    for item in summary.submissions:
        kind = item.name.split("@")[1]
        assert read_result(tmp_path / "out" / item.name).gpu_model.lower().replace(" ", "-") == kind
        assert {place.host for place in item.places} == {"host-a" if kind == "fake-a100" else "host-b"}
    boards = rank_by_gpu(load_results(tmp_path / "out"), allow_unaudited=True)
    assert sorted(boards) == ["Fake A100", "Fake H200"]
    for board in boards.values():
        assert sorted(e.result.model.name for e in board.categories[0.95]) == ["busy", "plain"]
