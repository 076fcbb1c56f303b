"""`edl score-dir` on real submissions: good, broken, crashing, endless, and an interrupted batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from builders import conv_model, endless_loop_model, oracle_images, oracle_model, save_npz

from evaluator.batch import score_directory
from evaluator.score import ScoreOptions

FAST = dict(passes=2, idle_seconds=0, cooldown_seconds=0, plot=False)


@pytest.fixture
def data(tmp_path):
    images, labels = oracle_images(1000, correct=960)
    return save_npz(tmp_path / "data.npz", images, labels)


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}


def test_mixed_folder_scores_the_good_and_records_the_bad(tmp_path, data):
    subs = tmp_path / "subs"
    subs.mkdir()
    oracle_model(subs / "good.onnx", "uint8", "NHWC")
    (subs / "folder_team").mkdir()
    oracle_model(subs / "folder_team" / "model.onnx", "float16", "NCHW", "labels")
    (subs / "garbage.onnx").write_bytes(b"\x00\x01 not a model")
    (subs / "two_models").mkdir()
    oracle_model(subs / "two_models" / "a.onnx")
    oracle_model(subs / "two_models" / "b.onnx")
    endless_loop_model(subs / "endless.onnx")
    summary = score_directory(subs, tmp_path / "out", ScoreOptions(data=data, **FAST), timeout_s=8)
    assert summary["counts"] == {"scored": 2, "failed": 3, "skipped": 0}
    results = _results(tmp_path / "out")
    assert results["good"]["status"] == "scored" and results["good"]["correct"] == 960
    assert results["folder_team"]["correct"] == 960
    assert "not an ONNX model" in results["garbage"]["reason"]
    assert "2 .onnx files" in results["two_models"]["reason"]
    assert "timed out after 8 s" in results["endless"]["reason"]
    again = score_directory(subs, tmp_path / "out", ScoreOptions(data=data, **FAST), timeout_s=8)
    assert again["counts"]["skipped"] == 4  # failures too: a hang is not rerun; the ambiguous folder is re-examined
    longer = score_directory(subs, tmp_path / "out", ScoreOptions(data=data, **FAST), timeout_s=9)
    assert [o["name"] for o in longer["submissions"] if o["outcome"] != "skipped"] == ["endless", "two_models"]
    forced = score_directory(subs, tmp_path / "out", ScoreOptions(data=data, **FAST | {"passes": 3}), timeout_s=8)
    assert forced["counts"]["skipped"] == 0  # other settings: nothing matches


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_crashing_child_is_recorded_and_the_batch_goes_on(tmp_path, data):
    """The child of the slow submission is killed with SIGKILL, as the OOM killer would."""
    subs = tmp_path / "subs"
    subs.mkdir()
    conv_model(subs / "a_crashes.onnx")
    oracle_model(subs / "b_fine.onnx")
    options = ScoreOptions(data=data, **FAST | {"passes": 100000})  # a_crashes would run for minutes

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kids = [k for k in _children(os.getpid()) if b"a_crashes" in Path(f"/proc/{k}/cmdline").read_bytes()]
            if kids:
                time.sleep(2)
                os.kill(kids[0], signal.SIGKILL)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=killer)
    thread.start()
    summary = score_directory(subs, tmp_path / "out", options, timeout_s=120)
    thread.join()
    results = _results(tmp_path / "out")
    assert "died with SIGKILL" in results["a_crashes"]["reason"]
    assert results["b_fine"]["status"] == "scored"
    assert summary["counts"]["failed"] == 1


def test_an_interrupted_batch_resumes_and_scores_each_once(tmp_path, data):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("s1", "s2", "s3"):
        conv_model(subs / f"{name}.onnx", seed=int(name[1]))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "evaluator", "score-dir", str(subs), "--data", str(data), "--out", str(out),
               "--passes", "60", "--idle-seconds", "0", "--cooldown", "0", "--no-plot"]
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "s1" / "result.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    batch.kill()  # kill -9 while s2 is being scored
    batch.wait()
    first = _results(out)
    assert set(first) == {"s1"}
    created = first["s1"]["created_utc"]
    resumed = subprocess.run([*command, "--json"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    outcomes = {s["name"]: s["outcome"] for s in json.loads(resumed.stdout)["submissions"]}
    assert outcomes == {"s1": "skipped", "s2": "scored", "s3": "scored"}
    final = _results(out)
    assert {r["status"] for r in final.values()} == {"scored"}
    assert final["s1"]["created_utc"] == created
