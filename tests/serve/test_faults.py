"""Faults with real processes: the worker (and the process that started it, as the server does) killed with -9 in
the middle of a scoring and started again: nothing lost, the submission scored once, the quota unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import fast_config, oracle_model

from evaluator.config import AuditConfig
from evaluator.events import RunPlaced
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME
from evaluator.serve.competition import open_store
from evaluator.serve.window import process_alive
from evaluator.serve.worker import start_worker_process

pytestmark = pytest.mark.slow
LEASE_S = 4.0
# Stands in for `edl serve` where it is not on this branch: a process that starts the worker as the server does, then
# waits (the worker watches its pid).
SERVER = ("import sys, time; from pathlib import Path; from evaluator.serve.worker import start_worker_process; "
          "worker = start_worker_process(Path(sys.argv[1])); print(worker.pid, flush=True); time.sleep(3600)")


def _wait_for(what: str, check: Callable[[], object], timeout_s: float = 120.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout_s:g} s for {what}")


def _queue(store, competition, team, path):
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    upload = competition.uploads / f"{digest}.onnx"
    upload.write_bytes(content)
    submission, _ = store.receive(team, digest, len(content), upload)
    return store.mark_checked(submission.id, [])


def _first_run_done(store, submission_id: int) -> bool:
    return any(isinstance(event, RunPlaced) for event in store.events_of(submission_id))


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    _wait_for(f"process {pid} to die", lambda: not process_alive(pid), 10)


def test_a_worker_killed_mid_scoring_loses_its_lease_and_the_submission_is_scored_once(tmp_path, make_competition,
                                                                                       test_set):
    score = dataclasses.replace(fast_config(test_set, passes=300), repeat=2, audit=AuditConfig(audit_copies=0))
    competition = make_competition(lease_s=LEASE_S, score=score)  # passes long enough to be killed inside
    store = open_store(competition)
    team = store.team_by_token(store.add_team("alpha"))
    first = _queue(store, competition, team, oracle_model(tmp_path / "a.onnx"))
    second = _queue(store, competition, team, oracle_model(tmp_path / "b.onnx", dtype="uint8"))
    used = store.quota(team).used_total
    worker = start_worker_process(competition.root, watch_pid=os.getpid())
    try:
        _wait_for("the first run of the first submission", lambda: _first_run_done(store, first.id))
        _wait_for("a measurement window", store.window_open, 60)
        assert store.submission(first.id).state == "scoring"
        worker.kill()  # mid-scoring, inside a window
        worker.wait()
        assert store.submission(first.id).state == "scoring" and store.window_open()  # until its lease runs out
        _wait_for("the dead worker's window to lapse with its lease", lambda: not store.window_open(), 3 * LEASE_S)
        worker = start_worker_process(competition.root, watch_pid=os.getpid())
        _wait_for("both submissions scored", lambda: all(
            store.submission(s.id).state in ("scored", "failed") for s in (first, second)), 240)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    for submission in (first, second):
        done = store.submission(submission.id)
        assert done.state == "scored", (done.reason, done.log_tail)
        result = read_result(competition.results / done.result_folder / RESULT_NAME)
        assert result.scored and result.model.sha256 == submission.sha256 and [r.index for r in result.runs] == [1, 2]
    states = [state for state, _, _ in store.history(first.id)]
    assert states == ["received", "checked", "queued", "scoring", "queued", "scoring", "scored"]
    assert store.submission(first.id).lease_expiries == 1
    db = sqlite3.connect(competition.db)
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM history WHERE state = 'scored'").fetchone()[0] == 2
    assert store.quota(team).used_total == used == 2
    assert not store.window_open()


def test_server_and_worker_killed_together_restart_and_lose_nothing(tmp_path, make_competition):
    competition = make_competition(repeat=2, lease_s=LEASE_S)
    store = open_store(competition)
    team = store.team_by_token(store.add_team("alpha"))
    submission = _queue(store, competition, team, oracle_model(tmp_path / "a.onnx"))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(competition.root)], stdout=subprocess.PIPE, text=True)
    worker_pid = int(server.stdout.readline())
    _wait_for("the first run", lambda: _first_run_done(store, submission.id))
    server.kill()
    server.wait()
    _kill(worker_pid)
    restarted = subprocess.Popen([sys.executable, "-c", SERVER, str(competition.root)], stdout=subprocess.PIPE,
                                 text=True)
    new_worker = int(restarted.stdout.readline())
    try:
        _wait_for("the submission scored", lambda: store.submission(submission.id).state in ("scored", "failed"), 240)
    finally:
        restarted.kill()
        restarted.wait()
        _wait_for("the worker to stop once its server is gone", lambda: not process_alive(new_worker), 30)
    done = store.submission(submission.id)
    assert done.state == "scored", (done.reason, done.log_tail)
    assert [state for state, _, _ in store.history(submission.id)].count("scored") == 1
    assert read_result(competition.results / done.result_folder / RESULT_NAME).scored
    assert store.quota(team).used_total == 1


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "evaluator", "serve", str(root), "--port", str(_free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_edl_serve_and_its_worker_killed_mid_scoring_restart_and_lose_nothing(tmp_path, make_competition):
    pytest.importorskip("evaluator.cli.serve", reason="edl serve is serve-web's: this runs once both are merged")
    competition = make_competition(repeat=2, lease_s=LEASE_S)
    store = open_store(competition)
    team = store.team_by_token(store.add_team("alpha"))
    submission = _queue(store, competition, team, oracle_model(tmp_path / "a.onnx"))
    server = _serve(competition.root)
    _wait_for("the first run", lambda: _first_run_done(store, submission.id))
    workers = _children(server.pid)
    assert workers and store.submission(submission.id).state == "scoring"
    server.kill()
    server.wait()
    for worker_pid in workers:
        _kill(worker_pid)
    restarted = _serve(competition.root)
    try:
        _wait_for("the submission scored", lambda: store.submission(submission.id).state in ("scored", "failed"), 240)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(60)
    done = store.submission(submission.id)
    assert done.state == "scored", (done.reason, done.log_tail)
    assert [state for state, _, _ in store.history(submission.id)] == [
        "received", "checked", "queued", "scoring", "queued", "scoring", "scored"]
    assert sqlite3.connect(competition.db).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    assert read_result(competition.results / done.result_folder / RESULT_NAME).scored
    assert store.quota(team).used_total == 1
