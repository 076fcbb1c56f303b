"""The issue's check: a memorising graph scored by score-dir beside real models is never ranked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from builders import PowercapTree, memorizing_model

from evaluator.data.store import load_path

SAMPLES = Path(__file__).parents[2] / "samples"


@pytest.mark.slow  # the audit through score-dir children on the real subset (the audit itself: scoring/test_audit.py)
def test_a_lookup_beside_real_models_is_under_review_and_the_real_ones_rank(tmp_path, shared_data, monkeypatch, cli):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(SAMPLES / "resnet20.onnx", subs / "resnet20.onnx")
    shutil.copy(SAMPLES / "small_cnn.onnx", subs / "small_cnn.onnx")
    dataset = load_path(shared_data)
    memorizing_model(subs / "lookup.onnx", dataset.images, dataset.labels)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[40.0]):
        run = cli("score-dir", subs, "--data", shared_data, "--out", tmp_path / "out", "--passes", "2",
                  "--repeat", "1", "--idle-seconds", "0", "--cooldown", "0", "--no-plot", "--audit-secret", "s3cret")
    assert run.exit_code == 0, run.stderr
    board = json.loads(cli("leaderboard", tmp_path / "out", "--format", "json").stdout)
    rows = {row["name"]: row for row in board["rows"]}
    assert rows["lookup"]["rank"] is None and rows["lookup"]["category"] == "under review"
    assert rows["lookup"]["accuracy_pct"] == 100.0 and "memorisation suspected" in rows["lookup"]["note"]
    assert rows["resnet20"]["rank"] == 1 and rows["resnet20"]["category"] == ">= 90 % (unofficial data)"  # a subset
    assert rows["resnet20"]["accuracy_pct"] == 91.5 and abs(rows["resnet20"]["audit_pct"] - 91.5) < 2
    assert rows["small_cnn"]["category"] == "unranked (unofficial data)" and rows["small_cnn"]["audit_pct"] is not None
    results = {name: json.loads((tmp_path / "out" / name / "result.json").read_text()) for name in rows}
    assert all("s3cret" not in json.dumps(result) for result in results.values())  # only its hash is kept
