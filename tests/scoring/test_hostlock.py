"""One scoring per host: a plain `edl score` waits for the lock that every scoring takes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from builders import colour_images, colour_model, save_npz

from evaluator.report.reader import read_result
from evaluator.scoring.hostlock import host_lock, lock_path


def test_the_lock_place_is_settable_per_host(tmp_path, monkeypatch):
    monkeypatch.setenv("EDL_HOST_LOCK", str(tmp_path / "a.lock"))
    assert lock_path() == tmp_path / "a.lock"
    monkeypatch.delenv("EDL_HOST_LOCK")
    assert lock_path() in (Path("/run/lock/edl-scoring.lock"), Path("/tmp/edl-scoring.lock"))


def test_a_scoring_waits_while_another_holds_the_host(tmp_path):
    images, labels = colour_images(300, correct=300)
    data = save_npz(tmp_path / "d.npz", images, labels)
    model = colour_model(tmp_path / "m.onnx")
    command = [sys.executable, "-m", "evaluator", "score", str(model), "--data", str(data), "--passes", "3",
               "--idle-seconds", "0", "--cooldown", "0", "--no-plot", "--out", str(tmp_path / "o")]
    with host_lock(path=lock_path()) as held:
        released = time.monotonic() + 2.0
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(max(0.0, released - time.monotonic()))
        assert child.poll() is None  # still waiting for the lock
        assert held.read_text().startswith("edl pid ")
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    assert "waiting for the scoring already running on this host" in stderr
    measured = next(w for w in read_result(tmp_path / "o").runs[0].windows if w.name == "measured")
    assert measured.start_s > released  # it measured only after the lock was given back
