"""score-dir on Ray when a host dies mid-batch: its scoring runs again on another host, nothing is lost or doubled.

A module of its own: it builds (and breaks) a cluster of its own, after test_ray's cluster is gone.
"""

from __future__ import annotations

import threading
import time

import pytest
from builders import busy_colour_model, fast_config

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, RuntimeConfig
from evaluator.report.reader import read_result

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytestmark = pytest.mark.slow  # a Ray instance per module: seconds to start, a child per scoring


CPU = RuntimeConfig(provider="cpu")


def test_a_host_that_dies_mid_batch_loses_nothing(tmp_path, models, two_hosts):
    data, subs = models
    (subs / "broken.onnx").unlink()
    for index in range(4):
        busy_colour_model(subs / f"extra{index}.onnx", channels=8, seed=index)
    hosts = tmp_path / "hosts"
    cluster, second = two_hosts(hosts, second_gpu="Fake A100")  # one kind: a lost run can move to the other host

    def kill_host_b_while_it_scores() -> None:
        deadline = time.monotonic() + 120
        while not (hosts / "host-b.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # host-b's first scoring has taken its lock: it is measuring now
        time.sleep(1.0)
        cluster.remove_node(second, allow_graceful=False)

    killer = threading.Thread(target=kill_host_b_while_it_scores)
    killer.start()
    try:
        summary = score_directory(subs, tmp_path / "out", fast_config(data, passes=150, runtime=CPU),
                                  BatchConfig(backend="ray", ray_address=cluster.address, timeout_s=120))
    finally:
        killer.join()
        cluster.shutdown()
    assert summary.lost_runs and summary.counts == {"scored": 6, "failed": 0, "skipped": 0}, summary
    lost = {line.split(" run ")[0] for line in summary.lost_runs}
    for item in summary.submissions:
        result = read_result(tmp_path / "out" / item.name)
        assert [run.index for run in result.runs] == [1] and result.correct == 380  # scored once, kept once
        if item.name in lost:
            assert item.places[-1].host == "host-a"  # run again on the host that lived
    assert not list((tmp_path / "out").glob("*/run-*.json"))
