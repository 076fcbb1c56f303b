"""`edl score-dir` on real submissions: good, broken, crashing, endless, memory-hungry, and an interrupted batch."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from builders import (
    endless_loop_model,
    fast_config,
    memory_hog_model,
    oracle_images,
    oracle_model,
    save_npz,
)

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, RuntimeConfig
from evaluator.errors import StoppedError, UsageError
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME


@pytest.fixture
def data(tmp_path):
    images, labels = oracle_images(1000, correct=960)
    return save_npz(tmp_path / "data.npz", images, labels)


def _results(out: Path) -> dict:
    return {p.parent.name: read_result(p) for p in out.glob(f"*/{RESULT_NAME}")}


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
    summary = score_directory(subs, tmp_path / "out", fast_config(data, audit=False))
    assert summary.counts == {"scored": 2, "failed": 2, "skipped": 0}
    results = _results(tmp_path / "out")
    assert results["good"].scored and results["good"].correct == 960
    assert results["folder_team"].correct == 960 and results["folder_team"].model.name == "folder_team"
    assert "not an ONNX model" in results["garbage"].reason and "\n" not in results["garbage"].reason
    assert "2 .onnx files" in results["two_models"].reason
    assert not list((tmp_path / "out").glob("*/.job.json")) and not list((tmp_path / "out").glob("*/.outcome.json"))
    again = score_directory(subs, tmp_path / "out", fast_config(data, audit=False))
    assert again.counts["skipped"] == 3  # a failure stands too; the ambiguous folder is re-examined
    with pytest.raises(UsageError, match=r"holds 2 measured result\(s\) under other settings \(passes: 2 there, 3 "
                       r"now\).*--out.*--force"):
        # other comparable settings: refused
        score_directory(subs, tmp_path / "out", fast_config(data, passes=3, audit=False))
    other = score_directory(subs, tmp_path / "out", fast_config(data, passes=3, audit=False), BatchConfig(force=True))
    assert other.counts["skipped"] == 0  # --force: nothing stands, and the earlier results are archived, not lost
    assert read_result(next((tmp_path / "out" / "_archive").glob("*/good/result.json"))).passes == 2
    plot_only = score_directory(subs, tmp_path / "out", fast_config(data, passes=3, plot=True, audit=False))
    assert plot_only.counts["skipped"] == 3  # where files go and what is drawn do not change a measurement


def test_a_hang_is_killed_at_the_timeout_and_retried_only_under_a_longer_one(tmp_path, data):
    subs = tmp_path / "subs"
    subs.mkdir()
    endless_loop_model(subs / "endless.onnx")
    started = time.monotonic()
    first = score_directory(subs, tmp_path / "out", fast_config(data, audit=False), BatchConfig(timeout_s=4))
    assert time.monotonic() - started < 20
    assert first.counts["failed"] == 1
    failure = _results(tmp_path / "out")["endless"]
    assert "timed out after 4 s" in failure.reason and failure.timeout_s == 4
    same = score_directory(subs, tmp_path / "out", fast_config(data, audit=False), BatchConfig(timeout_s=4))
    assert same.counts["skipped"] == 1
    longer = score_directory(subs, tmp_path / "out", fast_config(data, audit=False), BatchConfig(timeout_s=5))
    assert [item.outcome for item in longer.submissions] == ["failed"]
    assert "timed out after 5 s" in _results(tmp_path / "out")["endless"].reason


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
    """The child of the endless submission is killed with SIGKILL, as the OOM killer would."""
    subs = tmp_path / "subs"
    subs.mkdir()
    endless_loop_model(subs / "a_crashes.onnx")
    oracle_model(subs / "b_fine.onnx")

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kids = [k for k in _children(os.getpid()) if b"evaluator.batch.child" in Path(f"/proc/{k}/cmdline")
                    .read_bytes()]
            if kids:
                time.sleep(1.5)
                os.kill(kids[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    summary = score_directory(subs, tmp_path / "out", fast_config(data, audit=False), BatchConfig(timeout_s=60))
    thread.join()
    results = _results(tmp_path / "out")
    assert "died with SIGKILL" in results["a_crashes"].reason
    assert results["b_fine"].scored and summary.counts["failed"] == 1


def test_memory_exhaustion_is_contained_by_the_child_limit(tmp_path, data):
    subs = tmp_path / "subs"
    subs.mkdir()
    memory_hog_model(subs / "hog.onnx", gigabytes=8)
    oracle_model(subs / "ok.onnx")
    summary = score_directory(subs, tmp_path / "out",
                              fast_config(data, runtime=RuntimeConfig(provider="cpu"), audit=False),
                              BatchConfig(timeout_s=120, max_memory_gb=4))
    results = _results(tmp_path / "out")
    assert results["hog"].status == "failed" and results["ok"].scored
    assert "onnxruntime" in results["hog"].reason and "\n" not in results["hog"].reason
    assert summary.limits.address_space_bytes == 4 << 30


def test_a_batch_where_nothing_scored_exits_non_zero(tmp_path, data, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = cli("score-dir", empty, "--data", data, "--out", tmp_path / "o1")
    assert run.exit_code == 2 and "no submissions found" in run.stderr and not (tmp_path / "o1").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.onnx").write_bytes(b"junk")
    run = cli("score-dir", broken, "--data", data, "--out", tmp_path / "o2")
    assert run.exit_code == 1 and "every submission failed" in run.stderr and "failed   bad" in run.stdout


def test_discovery_lists_every_entry_it_does_not_score(tmp_path, data, cli):
    """Today's main scored 1 of these, said "scored 1, failed 0, skipped 0" and named none of the others."""
    subs = tmp_path / "subs"
    subs.mkdir()
    oracle_model(subs / "TeamA.ONNX")  # any case of the suffix is a submission
    oracle_model(subs / "_team.onnx")
    oracle_model(subs / ".hidden.onnx")
    (subs / "notes.txt").write_text("read me")
    run = cli("score-dir", subs, "--data", data, "--out", tmp_path / "out", "--repeat", "1", "--passes", "2",
              "--idle-seconds", "0", "--cooldown", "0", "--no-plot")
    assert run.exit_code == 0, run.stderr
    assert "scored   TeamA" in run.stdout and "scored 1, failed 0, skipped 0, ignored 3" in run.stdout
    assert "ignored  _team.onnx  names starting with '_' are kept for edl's own folders" in run.stdout
    assert "ignored  .hidden.onnx  hidden" in run.stdout and "ignored  notes.txt  not an .onnx file" in run.stdout
    batch = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert [entry["name"] for entry in batch["ignored"]] == [".hidden.onnx", "_team.onnx", "notes.txt"]


def test_the_parent_s_sink_sees_each_run_placed_then_its_child_s_phases_then_the_count(tmp_path, data):
    """The child forwards its scoring's events on a pipe as they happen: a service watching score-dir sees the
    phases and passes of the run in progress, in order, between the run's placement and its count."""
    from evaluator.events import Event, ImagesDone, PhaseFinished, PhaseStarted, RunPlaced, SubmissionsDone

    subs = tmp_path / "subs"
    subs.mkdir()
    oracle_model(subs / "a.onnx")
    (subs / "b.onnx").write_bytes(b"not a model")
    events: list[Event] = []
    score_directory(subs, tmp_path / "out", fast_config(data, passes=2), sink=events.append)
    places = [i for i, e in enumerate(events) if isinstance(e, RunPlaced)]
    counts = [i for i, e in enumerate(events) if isinstance(e, SubmissionsDone)]
    assert [events[i].submission for i in places] == ["a", "b"] and len(counts) == 2
    assert places[0] < counts[0] < places[1] < counts[1]
    good, bad = events[places[0]:counts[0]], events[places[1]:counts[1]]
    assert [e.phase for e in good if isinstance(e, PhaseStarted)] == ["check", "data", "session", "warmup", "pass",
                                                                     "audit"]
    counted = [e for e in good if isinstance(e, ImagesDone) and e.phase == "pass"]
    assert 1 <= len(counted) <= 2 and counted[-1] == ImagesDone("pass", 2000, 2000, 2, 2)  # coalesced, the last kept
    assert sum(isinstance(e, PhaseFinished) for e in good) == 6
    assert [type(e).__name__ for e in bad[1:]] == ["PhaseStarted", "PhaseFinished"]  # checked, refused: no data
    assert events[counts[1]] == SubmissionsDone("b", 2, 2, 1, events[places[1]].host)


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_a_stop_kills_the_run_in_progress_keeps_the_whole_ones_and_a_rerun_resumes(tmp_path, data, backend,
                                                                                   monkeypatch):
    """What the service's cancel of a scoring uses: an endless model's run dies within seconds of the stop (not at
    its 60 s timeout), the run already whole stays staged, nothing is published; the batch run again keeps it."""
    if backend == "ray":
        pytest.importorskip("ray", reason="the [ray] extra is not installed")
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    subs = tmp_path / "subs"
    subs.mkdir()
    oracle_model(subs / "a.onnx")
    endless_loop_model(subs / "z.onnx")
    config = fast_config(data, passes=2, audit=False, runtime=RuntimeConfig(provider="cpu"))
    batch, out, stop = BatchConfig(backend=backend, timeout_s=60), tmp_path / "out", threading.Event()
    stopped_at: list[float] = []

    def stop_during_z() -> None:
        deadline = time.monotonic() + 120
        while not (out / "_partial" / "a" / "run-1.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)  # z's child is running its endless passes
        stopped_at.append(time.monotonic())
        stop.set()

    stopper = threading.Thread(target=stop_during_z)
    stopper.start()
    with pytest.raises(StoppedError, match="stopped on request"):
        score_directory(subs, out, config, batch, stop=stop)
    stopper.join()
    assert time.monotonic() - stopped_at[0] < 10  # killed, not left to its timeout
    assert (out / "_partial" / "a" / "run-1.json").exists() and _results(out) == {}
    (subs / "z.onnx").unlink()
    resumed = score_directory(subs, out, config, batch)
    assert [(item.name, item.outcome, item.runs) for item in resumed.submissions] == [("a", "scored", [])]
    assert [run.index for run in _results(out)["a"].runs] == [1]
