"""The worker scores real models through score-dir's machinery into the competition's results root and records each
outcome once: scored with its progress and the server's CPU time per run, a time-out failed with its reason."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from builders import endless_loop_model, oracle_model

from evaluator.events import ImagesDone, PhaseFinished, PhaseStarted, RunPlaced, SubmissionsDone, Waiting
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME
from evaluator.serve.competition import open_store
from evaluator.serve.store import StoreError, Team
from evaluator.serve.window import process_cpu_s
from evaluator.serve.worker import Worker, fault_of


def _queue(store, competition, team, path):
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    upload = competition.uploads / f"{digest}.onnx"
    upload.write_bytes(content)
    submission, _ = store.receive(team, digest, len(content), upload)
    return store.mark_checked(submission.id, [])


def _team(store, name="alpha"):
    return store.team_by_token(store.add_team(name))


def test_a_queued_model_is_scored_signed_and_recorded_with_its_progress(tmp_path, make_competition, cli):
    competition = make_competition(repeat=2)
    store = open_store(competition)
    team = _team(store)
    submission = _queue(store, competition, team, oracle_model(tmp_path / "m.onnx"))
    seen_open = []
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: [seen_open.append(store.window_open()) or stop.wait(0.05)
                                               for _ in iter(lambda: stop.is_set(), True)])
    watcher.start()
    done = Worker(competition, watch_pid=os.getpid()).run_once()
    stop.set()
    watcher.join()
    assert done is not None and done.id == submission.id and done.state == "scored", done.reason
    assert done.result_folder == submission.name and f"scored: result {submission.name}" in done.log_tail
    result = read_result(competition.results / submission.name / RESULT_NAME)
    assert result.scored and result.correct == 480 and result.model.sha256 == submission.sha256
    assert result.signature is not None  # the competition's own key, made by init
    assert [run.index for run in result.runs] == [1, 2]
    assert all(isinstance(run.fairness.service_cpu_s, float) and run.fairness.service_cpu_s >= 0
               for run in result.runs)
    assert any(seen_open) and not store.window_open()
    events = store.events_of(submission.id)
    assert events[0] == PhaseStarted("scoring", total_passes=4) and isinstance(events[-1], PhaseFinished)
    assert [event.run for event in events if isinstance(event, RunPlaced)] == [1, 2]
    assert [(event.done, event.total) for event in events if isinstance(event, SubmissionsDone)] == [(1, 2), (2, 2)]
    progress = store.latest_progress(submission.id)
    assert (progress.done_runs, progress.total_runs) == (2, 2)
    assert store.quota(team).used_total == 1
    board = cli("leaderboard", competition.results, "--format", "json", "--allow-unaudited")
    assert board.exit_code == 0, board.stderr
    assert submission.name in board.stdout
    verified = cli("verify", competition.results / submission.name / RESULT_NAME, "--public-key",
                   competition.root / "keys" / "edl-signing.pub")
    assert verified.exit_code == 0, verified.stdout + verified.stderr


@pytest.mark.slow
def test_a_scoring_over_its_timeout_fails_with_its_reason_and_the_next_starts(tmp_path, make_competition):
    competition = make_competition(timeout_s=10)
    store = open_store(competition)
    team = _team(store)
    endless = _queue(store, competition, team, endless_loop_model(tmp_path / "endless.onnx"))
    good = _queue(store, competition, team, oracle_model(tmp_path / "good.onnx"))
    worker = Worker(competition)
    failed = worker.run_once()
    assert failed.id == endless.id and failed.state == "failed" and failed.fault == "team"
    assert "timed out after 10 s" in failed.reason and "make the model faster" in failed.reason
    assert "timed out" in failed.log_tail
    scored = worker.run_once()
    assert scored.id == good.id and scored.state == "scored"
    assert worker.run_once() is None
    assert store.quota(team).used_total == 2  # a time-out is the model's: it counts
    store.requeue(endless.id)  # the organiser's re-run measures again: the earlier failure goes to the archive
    again = worker.run_once()
    assert again.id == endless.id and again.state == "failed" and "timed out after 10 s" in again.reason
    assert "an earlier failure" in again.log_tail and list(competition.results.glob(f"_archive/*/{endless.name}"))
    assert store.quota(team).used_total == 2  # the same submission: counted once


def test_the_organiser_cancels_a_scoring_in_progress_and_the_next_starts(tmp_path, make_competition):
    """A runaway model held the machine until its timeout: the organiser's cancel now kills its run within seconds,
    records nothing of it, uses no quota; a team cannot stop its own scoring (it would cost the machine, not the
    quota)."""
    competition = make_competition(timeout_s=120)
    store = open_store(competition)
    team = _team(store)
    endless = _queue(store, competition, team, endless_loop_model(tmp_path / "endless.onnx"))
    good = _queue(store, competition, team, oracle_model(tmp_path / "good.onnx"))
    refused, cancelled_at = [], []
    assert store.quota(team).used_total == 2  # both queued

    def cancel_when_measuring() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (store.submission(endless.id).state == "scoring"
                                                   and _scoring_child_alive()):
            time.sleep(0.05)
        time.sleep(1.0)  # into the run
        try:
            store.cancel(endless.id, team)
        except StoreError as exc:
            refused.append(str(exc))
        store.cancel(endless.id, Team(0, "organiser", "", organiser=True))
        cancelled_at.append(time.monotonic())

    canceller = threading.Thread(target=cancel_when_measuring)
    canceller.start()
    worker = Worker(competition)
    stopped = worker.run_once()
    returned_at = time.monotonic()
    canceller.join()
    assert refused == [f"submission {endless.id} is being scored: only the organiser can stop a scoring in progress"]
    assert stopped.id == endless.id and stopped.state == "cancelled"
    assert returned_at - cancelled_at[0] < 10, returned_at - cancelled_at[0]  # not the 120 s timeout
    assert not _scoring_child_alive() and not store.window_open()
    assert "cancelled by the organiser during its scoring" in (competition.logs / f"{endless.id}.log").read_text()
    assert store.history(endless.id)[-1][2].startswith("by the organiser, during its scoring")
    assert not (competition.results / endless.name / RESULT_NAME).exists()  # nothing published
    assert store.quota(team).used_total == 1  # the cancelled one no longer counts: only the good one, queued
    scored = worker.run_once()
    assert scored.id == good.id and scored.state == "scored"
    assert store.quota(team).used_total == 1


def test_a_cancel_that_lands_as_the_scoring_ends_keeps_its_result_off_the_board(tmp_path, make_competition,
                                                                                  monkeypatch):
    """Too late to stop: the result the scoring published moves to the archive (kept), nothing is recorded."""
    from evaluator.serve import worker as worker_module

    competition = make_competition()
    store = open_store(competition)
    team = _team(store)
    submission = _queue(store, competition, team, oracle_model(tmp_path / "m.onnx"))
    real = worker_module.score_folder

    def score_then_cancel(*args, **kwargs):
        summary = real(*args, **kwargs)
        store.cancel(submission.id, Team(0, "organiser", "", organiser=True))
        return summary

    monkeypatch.setattr(worker_module, "score_folder", score_then_cancel)
    done = Worker(competition).run_once()
    assert done.state == "cancelled" and done.result_folder is None
    assert not (competition.results / submission.name / RESULT_NAME).exists()  # not on any board
    (archived,) = competition.results.glob(f"_archive/*/{submission.name}/{RESULT_NAME}")
    assert read_result(archived).scored  # the measurement is kept
    assert "its result moved to" in (competition.logs / f"{submission.id}.log").read_text()
    assert store.quota(team).used_total == 0 and not store.window_open()


def _scoring_child_alive() -> bool:
    """A scoring child of this test process's (any depth) is running."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                command = handle.read()
            with open(f"/proc/{entry.name}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"evaluator.batch.child" in command and state != "Z" and _descends_from(int(entry.name), os.getpid()):
            return True
    return False


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def test_a_re_run_of_a_scored_submission_records_its_result_once(tmp_path, make_competition):
    competition = make_competition()
    store = open_store(competition)
    submission = _queue(store, competition, _team(store), oracle_model(tmp_path / "m.onnx"))
    worker = Worker(competition)
    worker.run_once()
    store.requeue(submission.id)
    again = worker.run_once()
    assert again.state == "scored" and again.result_folder == submission.name
    assert [state for state, _, _ in store.history(submission.id)].count("scored") == 2
    assert sqlite3.connect(competition.db).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


def test_another_teams_copy_is_not_measured_twice(tmp_path, make_competition):
    competition = make_competition()
    store = open_store(competition)
    model = oracle_model(tmp_path / "m.onnx")
    first = _queue(store, competition, _team(store, "alpha"), model)
    copy = _queue(store, competition, _team(store, "beta"), model)
    worker = Worker(competition)
    worker.run_once()
    linked = worker.run_once()
    assert linked.id == copy.id and linked.state == "scored" and linked.result_folder == first.name
    assert linked.duplicate_of == first.id
    assert sorted(p.name for p in competition.results.iterdir() if not p.name.startswith(("_", "."))) == [
        first.name, "batch.json"]


def test_the_organisers_side_is_told_apart_from_the_teams():
    assert fault_of("the power sampler died during the run (exit code -9)") == "organiser"
    assert fault_of("timed out after 4 s (--timeout); the scoring process was killed") == "team"
    assert fault_of("the scoring process died with SIGKILL (killed: out of memory?)") == "team"


def test_process_cpu_time_is_read_from_proc():
    before = process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert process_cpu_s(os.getpid()) > before
    assert process_cpu_s(2**22 + 12345) is None and process_cpu_s(None) is None


def test_counts_are_stored_at_most_every_few_seconds_and_runs_lap_the_cpu(store, team, upload, monkeypatch):
    from evaluator.serve import recorder as recorder_module
    from evaluator.serve.recorder import ProgressRecorder
    from evaluator.serve.window import RunWindows

    now = [100.0]
    monkeypatch.setattr(recorder_module.time, "monotonic", lambda: now[0])
    submission, _ = upload(team.team, b"m")
    passed, lines = [], []
    windows = RunWindows(os.getpid())
    record = ProgressRecorder(store, submission.id, lines.append, windows, passed.append)
    record(PhaseStarted("warmup", 1000, 200))
    for done in range(1, 201):  # one count per pass, a pass every 0.1 s
        now[0] += 0.1
        record(ImagesDone("warmup", done * 5, 1000, done, 200))
    record(PhaseFinished("warmup", 20.0))
    stored = store.events_of(submission.id)
    counts = [event.done_passes for event in stored if isinstance(event, ImagesDone)]
    assert len(passed) == 202 and len(stored) == len(lines) < 10  # every event onward, few stored
    assert counts[0] == 1 and counts[-1] == 200  # the first, and the latest kept for the next phase change
    assert all(b - a >= 49 for a, b in itertools.pairwise(counts[:-1]))  # none closer than 5 s (50 passes) apart
    before = len(stored)
    record(PhaseStarted("pass", 1000, 200))
    for done in range(1, 201):
        now[0] += 0.1
        record(ImagesDone("pass", done * 5, 1000, done, 200))
    assert len(store.events_of(submission.id)) == before  # nothing written while the passes are measured
    record(PhaseFinished("pass", 20.0))
    assert [type(e) for e in store.events_of(submission.id)[before:]] == [PhaseStarted, ImagesDone, PhaseFinished]
    assert store.latest_progress(submission.id).done_passes == 200
    record(Waiting("idle_baseline", 3.0))
    record(Waiting("idle_baseline", 2.0))
    assert len(store.events_of(submission.id)) == before + 3
    record(RunPlaced("alpha-1", 1, "host-a"))  # a run's end stores what was held (a run that died mid-window)
    record(SubmissionsDone("alpha-1", 1, 1))
    assert [type(e) for e in store.events_of(submission.id)[before + 3:]] == [Waiting, RunPlaced, SubmissionsDone]
    assert windows.by_run.keys() == {("alpha-1", 1)} and windows.by_run[("alpha-1", 1)] >= 0


def test_a_result_published_by_a_worker_that_died_before_recording_it_is_recorded_not_measured(tmp_path,
                                                                                               make_competition):
    from evaluator.batch.directory import score_directory

    competition = make_competition()
    store = open_store(competition)
    submission = _queue(store, competition, _team(store), oracle_model(tmp_path / "m.onnx"))
    claimed = store.claim("died", competition.settings.lease_s)
    folder = competition.work / claimed.name
    folder.mkdir(parents=True)
    (folder / f"{claimed.name}.onnx").write_bytes(claimed.path.read_bytes())
    score_directory(folder, competition.results, competition.settings.score, competition.settings.batch,
                    secrets=competition.secrets())  # the dead worker got this far: the result is published
    store.clock = lambda: time.time() + 10 * competition.settings.lease_s  # its lease runs out
    done = Worker(competition, store=store).run_once()
    assert done.id == submission.id and done.state == "scored" and done.lease_expiries == 1
    assert "runs [] on no host" in done.log_tail  # nothing measured again
    assert read_result(competition.results / submission.name / RESULT_NAME).scored


def test_the_worker_process_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    from evaluator.serve.worker import main

    assert main([]) == 2 and capsys.readouterr().err.startswith("error: usage: python -m evaluator.serve.worker")
    assert main([str(tmp_path), "--watch-pid", "x"]) == 2 and "--watch-pid 'x'" in capsys.readouterr().err
    assert main([str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"run edl competition init {tmp_path / 'none'}")


# --- the window flag follows the metered windows ------------------------------------------------------------------


def _staged(tmp_path, model):
    from evaluator.serve.uploads import StagedFile

    content = model.read_bytes()
    staged = tmp_path / f"staged-{model.stem}.part"
    staged.write_bytes(content)
    return StagedFile(staged, hashlib.sha256(content).hexdigest(), len(content), model.name)


def _flag_along(events_seen, predicate):
    return [open_ for event, open_ in events_seen if predicate(event)]


def test_the_window_flag_is_open_from_the_idle_baseline_to_the_passes_end_and_an_upload_meanwhile_is_checked_at_once(
        tmp_path, test_set, fake_gpu):
    """A real scoring through the worker (fake GPU metered: a cool-down, an idle baseline; the audit on, two runs):
    the flag is open during the idle baseline, the warm-up and the measured passes only; a rival's upload made
    during the audit is checked at once ("queued, position 1"), not after the scoring."""
    from builders import fast_config

    from evaluator.config import RuntimeConfig
    from evaluator.serve.competition import init_competition
    from evaluator.serve.settings import CompetitionSettings
    from evaluator.serve.web import Web

    fake_gpu(watts=100.0)
    score = dataclasses.replace(fast_config(test_set, runtime=RuntimeConfig(provider="cpu"), idle_s=1.0,
                                            cooldown_s=2.0, target_temp_c=60.0), repeat=2)
    competition = init_competition(tmp_path / "c", CompetitionSettings(name="Window cup", deadline="2030-01-01T00:00Z",
                                                                       score=score))[0]
    store = open_store(competition)
    scored = _queue(store, competition, _team(store), oracle_model(tmp_path / "m.onnx"))
    web, rival = Web(competition.root), _team(store, "rival")
    seen, verdicts = [], []

    def sink(event):
        seen.append((event, store.window_open()))
        if isinstance(event, PhaseStarted) and event.phase == "audit":
            started = time.monotonic()
            verdict = web.accept(rival, _staged(tmp_path, oracle_model(tmp_path / "rival.onnx", dtype="uint8")))
            verdicts.append((verdict.message, time.monotonic() - started))

    try:
        done = Worker(competition, watch_pid=os.getpid(), sink=sink).run_once()
    finally:
        web.stop()
    assert done is not None and done.id == scored.id and done.state == "scored", done.reason
    assert _flag_along(seen, lambda e: isinstance(e, Waiting) and e.waiting_for == "idle_baseline")[:1] == [True]
    assert all(_flag_along(seen, lambda e: isinstance(e, Waiting) and e.waiting_for == "idle_baseline"))
    assert all(_flag_along(seen, lambda e: isinstance(e, ImagesDone) and e.phase in ("warmup", "pass")))
    closed = _flag_along(seen, lambda e: (isinstance(e, PhaseStarted) and e.phase in ("check", "data", "session",
                                                                                     "audit")) or (
        isinstance(e, PhaseFinished) and e.phase == "pass") or isinstance(e, (RunPlaced, SubmissionsDone)) or (
        isinstance(e, Waiting) and e.waiting_for == "cooldown"))
    assert len(closed) >= 10 and not any(closed)
    assert len(_flag_along(seen, lambda e: isinstance(e, Waiting) and e.waiting_for == "cooldown")) == 2
    assert len(verdicts) == 1 and verdicts[0][0] == "queued, position 1", verdicts
    print(f"\nupload during a rival's audit: '{verdicts[0][0]}' after {verdicts[0][1]:.2f} s")
    assert not store.window_open()
    result = read_result(competition.results / scored.name / RESULT_NAME)
    assert [isinstance(run.fairness.service_cpu_s, float) for run in result.runs] == [True, True]


# --- the server's CPU time is its whole process tree's -------------------------------------------------------------

BUSY = ("import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < 0.6:\n    pass\n"
        "print('busy done', flush=True)\ntime.sleep(60)")


def _busy_descendant(*marker: str) -> subprocess.Popen[str]:
    """A child that starts a grandchild (as the check server forks a check), which burns 0.6 s of CPU then idles."""
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"
    child = subprocess.Popen([sys.executable, "-c", spawn, *marker], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "busy done"
    return child


@pytest.mark.parametrize("excluded", ["", "worker", "scoring child"])
def test_the_service_cpu_counts_the_watched_process_tree_but_not_the_measurement(excluded):
    from evaluator.serve.window import tree_cpu_s

    pid = os.getpid()
    before_tree, before_own = tree_cpu_s(pid), process_cpu_s(pid)
    child = _busy_descendant(*(["evaluator.batch.child"] if excluded == "scoring child" else []))
    try:
        worker = child.pid if excluded == "worker" else None
        tree, own = tree_cpu_s(pid, worker) - before_tree, process_cpu_s(pid)
        if excluded:
            assert tree < 0.4, f"the {excluded}'s CPU was counted: {tree:.2f} s"
        else:
            assert tree >= 0.5, tree  # the grandchild's 0.6 s
            assert own - before_own < 0.4  # what the pid alone showed: the check server's work missed
    finally:
        child.kill()
        child.wait()
    assert tree_cpu_s(2**22 + 12345) is None and tree_cpu_s(None) is None


# --- the Ray backend through the worker ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_worker_scores_on_a_local_ray_instance(tmp_path, make_competition, monkeypatch):
    """``backend = "ray"`` in the competition's settings: the worker's scoring starts a local Ray instance (no
    address), scores there, records the result and the server's CPU over the whole run (the runs' own events stay
    on their hosts); the flag is closed again afterwards."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from evaluator.config import BatchConfig

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    competition = make_competition(batch=BatchConfig(backend="ray", timeout_s=300.0))
    store = open_store(competition)
    submission = _queue(store, competition, _team(store), oracle_model(tmp_path / "m.onnx"))
    seen = []
    done = Worker(competition, watch_pid=os.getpid(), sink=lambda event: seen.append((event, store.window_open()))
                  ).run_once()
    assert done is not None and done.state == "scored", (done.reason, done.log_tail)
    result = read_result(competition.results / submission.name / RESULT_NAME)
    assert result.scored and result.correct == 480
    assert isinstance(result.runs[0].fairness.service_cpu_s, float)
    assert _flag_along(seen, lambda e: isinstance(e, RunPlaced)) == [True]
    assert json.loads((competition.results / "batch.json").read_text())["backend"] == "ray"
    assert not store.window_open()


@pytest.mark.slow
def test_edl_serve_with_the_ray_backend_scores_an_upload(tmp_path, make_competition, monkeypatch):
    """``edl serve`` (its worker process) with ``backend = "ray"`` read from competition.toml: an upload by
    ``edl submit`` is scored on a local Ray instance the worker starts."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    import httpx
    from serve.web_fixtures import bearer, server_process

    from evaluator.config import BatchConfig
    from evaluator.serve.settings import load_competition

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    competition = make_competition(batch=BatchConfig(backend="ray", timeout_s=300.0))
    assert load_competition(competition.root).settings.batch.backend == "ray"  # as the file says
    token = open_store(competition).add_team("alpha")
    with server_process(competition.root) as (url, _):
        sent = subprocess.run([sys.executable, "-m", "evaluator", "submit", str(oracle_model(tmp_path / "m.onnx")),
                               "--server", url, "--token", token], capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0 and "queued, position 1" in sent.stdout, sent.stdout + sent.stderr
        deadline, detail = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            detail = httpx.get(f"{url}/api/submissions/1", headers=bearer(token)).json()
            if detail["state"] in ("scored", "failed"):
                break
            time.sleep(1)
    assert detail["state"] == "scored", detail
    assert json.loads((competition.results / "batch.json").read_text())["backend"] == "ray"  # not the local one
    assert detail["result"]["accuracy"] == 0.96 and detail["result"]["signed"]
    assert all(s is not None and s >= 0 for s in detail["result"]["service_cpu_s"])


def test_with_ray_each_run_in_flight_holds_the_window_and_gets_the_cpu_spent_while_it_flies(store):
    from evaluator.serve.window import RunWindows, WindowFlag

    windows = RunWindows(os.getpid(), WindowFlag(store, "w", 60.0), whole_runs=True)
    windows.observe(PhaseStarted("pass"))  # a host's phases never reach the driver; were one to, it changes nothing
    assert not store.window_open()
    windows.observe(RunPlaced("a", 1, "host-a"))
    windows.observe(RunPlaced("b", 1, "host-b"))
    assert store.window_open()
    sum(i * i for i in range(3_000_000))  # CPU while both fly
    windows.observe(SubmissionsDone("a", 1, 2, 1, "host-a"))
    assert store.window_open()  # b still flies
    windows.observe(SubmissionsDone("b", 2, 2, 1, "host-b"))
    assert not store.window_open()
    a, b = windows.by_run[("a", 1)], windows.by_run[("b", 1)]
    assert a > 0.05 and b > 0.05 and abs(a - b) < 0.05  # each got the time both flew (a alone a moment more)


def test_settings_changed_after_results_were_measured_stop_the_service_at_its_start(tmp_path, make_competition, cli,
                                                                                   capsys):
    from evaluator.serve.settings import load_competition, settings_text
    from evaluator.serve.worker import main

    competition = make_competition()
    store = open_store(competition)
    _queue(store, competition, _team(store), oracle_model(tmp_path / "m.onnx"))
    assert Worker(competition).run_once().state == "scored"
    changed = dataclasses.replace(competition.settings.score, passes=3)
    competition.settings_file.write_text(settings_text(dataclasses.replace(competition.settings, score=changed)))
    assert main([str(competition.root)]) == 2
    refusal = capsys.readouterr().err
    expected = (f"error: {competition.results} holds 1 measured result(s) under other scoring settings than "
                f"{competition.settings_file} ([score] passes = 2 there, 3 now): restore [score] passes = 2 in "
                f"{competition.settings_file}, or start a new competition folder: measured results are never mixed "
                "or replaced\n")
    assert refusal == expected
    for command in (("serve", competition.root, "--port", "1"), ("competition", "final", competition.root)):
        refused = cli(*command)
        assert refused.exit_code == 2 and expected in refused.stderr and "--out" not in refused.stderr, command
    competition.settings_file.write_text(settings_text(competition.settings))
    Worker(load_competition(competition.root)).refuse_incomparable()  # as before: nothing to refuse


def test_a_failure_the_team_sees_names_no_command_line_flag():
    from evaluator.report.batch_record import BatchItem
    from evaluator.serve.worker import team_reason

    item = BatchItem(name="alpha-1", outcome="failed",
                     reason="timed out after 10 s (--timeout); the scoring process was killed")
    reason = team_reason(item, 10)
    assert "--" not in reason and "[batch] timeout_s in competition.toml" in reason


def test_a_second_worker_on_one_competition_folder_is_refused_in_one_line(competition, capsys):
    from evaluator.serve.competition import hold_lock
    from evaluator.serve.worker import main

    held = hold_lock(competition, "worker")
    assert main([str(competition.root)]) == 2
    refusal = capsys.readouterr().err
    assert refusal.startswith(f"error: {competition.root} is already served: its worker runs as pid ")
    assert refusal.count("\n") == 1
    held.close()
