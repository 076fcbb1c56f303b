"""One scoring per host: a plain `edl score` waits for the lock that every scoring takes."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
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
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert child.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in child.stderr], daemon=True).start()
        seen = []  # held until the child says it waits (a fixed 2 s was too short for a loaded host to start it)
        while not any(line.startswith("waiting for the scoring already running on this host (edl pid ")
                      for line in seen):
            try:
                seen.append(lines.get(timeout=60))
            except queue.Empty:
                child.kill()
                raise AssertionError(f"the child did not say it waits within 60 s: {''.join(seen)}") from None
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the lock
        assert held.read_text().startswith("edl pid ")
        released = time.monotonic()
    child.wait(timeout=60)
    while not lines.empty():
        seen.append(lines.get())
    assert child.returncode == 0, "".join(seen)
    measured = next(w for w in read_result(tmp_path / "o").runs[0].windows if w.name == "measured")
    assert measured.start_s > released  # it measured only after the lock was given back
