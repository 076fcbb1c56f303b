"""score-dir --backend ray without an address: a local Ray instance, started and stopped by the batch."""

from __future__ import annotations

import pytest
from builders import fast_config

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, RuntimeConfig
from evaluator.report.reader import read_result

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytestmark = pytest.mark.slow  # a Ray instance per module: seconds to start, a child per scoring


def test_a_local_ray_instance_scores_as_the_local_backend_does(tmp_path, models, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    data, subs = models
    config = fast_config(data, passes=10, runtime=RuntimeConfig(provider="cpu"))
    local = score_directory(subs, tmp_path / "local", config)
    remote = score_directory(subs, tmp_path / "ray", config, BatchConfig(backend="ray"))
    assert not ray.is_initialized()  # the instance the batch started is gone again
    assert remote.counts == local.counts == {"scored": 2, "failed": 1, "skipped": 0}
    for name in ("plain", "busy"):
        assert read_result(tmp_path / "ray" / name).correct == read_result(tmp_path / "local" / name).correct == 380
    assert len(remote.hosts) == 1
