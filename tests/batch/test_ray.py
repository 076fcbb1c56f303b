"""score-dir on Ray: a simulated cluster of two hosts, one fake GPU kind each, scoring real models on the CPU."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest
from builders import busy_colour_model, colour_images, colour_model, fast_config, save_npz

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, RuntimeConfig
from evaluator.report.leaderboard import load_results, rank_by_gpu
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

TESTS = Path(__file__).parents[1]
ROOT = TESTS.parent


def _host(name: str, gpu: str, folder: Path) -> dict:
    """One simulated host: its own lock file, GPU model (through the fake NVML) and GPU-kind resource."""
    env = {"EDL_HOST_LOCK": str(folder / f"{name}.lock"), "EDL_NVML_MODULE": "fake_pynvml", "FAKE_NVML_MODE": "",
           "FAKE_NVML_NAME": gpu, "FAKE_NVML_WATTS": "50", "FAKE_NVML_TEMPS": "40",
           "EDL_POWERCAP_ROOT": str(folder / "no-powercap"), "EDL_DATA_DIR": str(folder / f"{name}-cache"),
           "PYTHONPATH": f"{TESTS}:{ROOT}", "RAY_AUTH_MODE": "disabled"}
    kind = "edl-gpu-" + gpu.lower().replace(" ", "-")
    return {"num_cpus": 1, "resources": {"edl-host": 1, kind: 1}, "labels": {"edl.host": name}, "env_vars": env,
            "object_store_memory": 100 << 20}


def _cluster(folder: Path) -> tuple[Cluster, object]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args=_host("host-a", "Fake A100", folder)
                      | {"include_dashboard": False})
    second = cluster.add_node(**_host("host-b", "Fake H200", folder))
    return cluster, second


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made, _ = _cluster(tmp_path_factory.mktemp("hosts"))
    yield made
    made.shutdown()


@pytest.fixture
def models(tmp_path):
    images, labels = colour_images(400, correct=380)
    data = save_npz(tmp_path / "d.npz", images, labels)
    subs = tmp_path / "subs"
    subs.mkdir()
    colour_model(subs / "plain.onnx")
    busy_colour_model(subs / "busy.onnx", channels=8)
    (subs / "broken.onnx").write_bytes(b"not a model")
    return data, subs


CPU = RuntimeConfig(provider="cpu")


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


def test_a_host_that_dies_mid_batch_loses_nothing(tmp_path, models):
    data, subs = models
    (subs / "broken.onnx").unlink()
    for index in range(4):
        busy_colour_model(subs / f"extra{index}.onnx", channels=8, seed=index)
    cluster, second = _cluster(tmp_path / "hosts")
    try:
        def kill_second_host() -> None:
            time.sleep(6.0)  # hosts are busy by then
            cluster.remove_node(second, allow_graceful=False)

        killer = threading.Thread(target=kill_second_host)
        killer.start()
        summary = score_directory(subs, tmp_path / "out", fast_config(data, passes=40, runtime=CPU),
                                  BatchConfig(backend="ray", ray_address=cluster.address, timeout_s=120))
        killer.join()
    finally:
        cluster.shutdown()
    assert summary.counts == {"scored": 6, "failed": 0, "skipped": 0}, summary.submissions
    for item in summary.submissions:
        result = read_result(tmp_path / "out" / item.name)
        assert [run.index for run in result.runs] == [1] and result.correct == 380
    assert not list((tmp_path / "out").glob("*/run-*.json"))
