"""The competition's store on a real SQLite file: tokens, states and their times, quotas, duplicates, the leased
queue under concurrent workers, results recorded once, progress and the measurement window; and its settings."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from evaluator.errors import UsageError
from evaluator.events import ImagesDone, PhaseStarted, RunPlaced, SubmissionsDone
from evaluator.serve.competition import init_competition, open_store
from evaluator.serve.settings import SETTINGS_NAME, CompetitionSettings, load_competition, settings_text
from evaluator.serve.store import Limits, Store, StoreError, Team

LEASE_S = 30.0


def queued(store, upload, team, content: bytes):
    submission, _ = upload(team, content)
    return store.mark_checked(submission.id, [])


# --- settings ---------------------------------------------------------------------------------------------


def test_settings_file_holds_every_setting_once_and_reads_back(competition):
    text = competition.settings_file.read_text()
    for name in ("name", "deadline", "per_day", "in_total", "max_queued", "upload_max_bytes", "final_repeat",
                 "[score]", "passes", "[score.meter]", "[batch]", "timeout_s", "audit_secret_env"):
        assert f"\n{name}" in text or f"# {name} =" in text, name
    assert text == settings_text(competition.settings)
    assert load_competition(competition.root).settings == competition.settings
    assert competition.settings.score.repeat == 3  # score-dir's default, not score's


def test_an_edited_settings_file_is_read_and_a_wrong_one_refused_naming_the_key(competition):
    path = competition.settings_file
    path.write_text(path.read_text().replace("per_day = 5", "per_day = 7"))
    assert load_competition(competition.root).settings.per_day == 7
    path.write_text(path.read_text() + "\nper_week = 3\n")
    with pytest.raises(UsageError, match=r"unknown field\(s\) \['per_week'\]; fix the file"):
        load_competition(competition.root)
    path.write_text(path.read_text().replace("\nper_week = 3\n", "").replace("per_day = 7", "per_day = 0"))
    with pytest.raises(UsageError, match="per-day 0: must be 1 or more"):
        load_competition(competition.root)
    path.write_text(path.read_text().replace("per_day = 0", "per_day = 2").replace(
        'deadline = "2030-01-01T00:00Z"', 'deadline = "tomorrow"'))
    with pytest.raises(UsageError, match="give the deadline in UTC"):
        load_competition(competition.root)
    path.write_text(path.read_text().replace('deadline = "tomorrow"', 'deadline = "2030-01-01T00:00Z"').replace(
        "force = false", "force = true"))
    with pytest.raises(UsageError, match=r"batch\.force = true: a competition never scores everything again"):
        load_competition(competition.root)
    path.write_text(path.read_text().replace("force = true", "force = false").replace(
        'deadline = "2030-01-01T00:00Z"', "deadline = 'single quotes'"))
    with pytest.raises(UsageError, match=r"competition.toml line \d+: .*write key = value"):
        load_competition(competition.root)


def test_a_competition_is_made_once_with_owner_only_secrets(tmp_path, competition):
    with pytest.raises(UsageError, match="already holds a competition"):
        init_competition(competition.root, competition.settings)
    secrets = competition.secrets()
    assert secrets.signing_key is not None and secrets.signing_key.is_file()
    assert secrets.audit_secret and len(secrets.audit_secret) >= 32
    for path in (secrets.signing_key, competition.root / "keys" / "audit_secret"):
        assert path.stat().st_mode & 0o077 == 0, path
    assert secrets.audit_secret not in competition.settings_file.read_text()
    assert (competition.root / SETTINGS_NAME).is_file() and competition.results.is_dir()


# --- teams and tokens -------------------------------------------------------------------------------------


def test_tokens_are_stored_as_hashes_and_revoked_at_once(store, competition):
    token = store.add_team("alpha")
    other = store.add_team("beta")
    assert token != other and len(token) >= 40
    assert store.team_by_token(token).name == "alpha"
    assert store.team_by_token(token + "x") is None and store.team_by_token("") is None
    store.close()
    raw = b"".join(path.read_bytes() for path in competition.root.glob(competition.db.name + "*"))
    assert token.encode() not in raw and other.encode() not in raw
    assert [t.name for t in store.list_teams()] == ["alpha", "beta"]
    assert store.revoke_team("alpha").revoked_utc is not None
    assert store.team_by_token(token) is None and store.team_by_token(other).name == "beta"
    with pytest.raises(UsageError, match="exists already"):
        store.add_team("beta")
    with pytest.raises(UsageError, match=r"team name '\.\./x'"):
        store.add_team("../x")
    with pytest.raises(UsageError, match="no team named 'gamma'"):
        store.revoke_team("gamma")


def test_the_organiser_token_is_not_a_team_and_a_new_one_replaces_it(organiser_token):
    competition, token = organiser_token
    store = open_store(competition)
    assert store.is_organiser(token) and store.list_teams() == []
    newer = store.set_organiser_token()
    assert not store.is_organiser(token) and store.is_organiser(newer)
    team_token = store.add_team("alpha")
    assert not store.is_organiser(team_token)


# --- states, quotas, duplicates ---------------------------------------------------------------------------


def test_every_state_is_kept_with_its_time(store, team, upload, clock):
    submission, created = upload(team.team, b"model one")
    assert created and submission.state == "received" and submission.name == f"alpha-{submission.id}"
    clock.advance(1)
    assert store.mark_checked(submission.id, []).state == "queued"
    clock.advance(1)
    claimed = store.claim("w1", LEASE_S)
    assert claimed is not None and claimed.id == submission.id and claimed.state == "scoring"
    clock.advance(1)
    done, recorded = store.finish(submission.id, "w1", "alpha-1", "a" * 64, "f" * 64, "log line\n" * 100)
    assert recorded and done.state == "scored" and done.result_folder == "alpha-1"
    assert [state for state, _, _ in store.history(submission.id)] == ["received", "checked", "queued", "scoring",
                                                                         "scored"]
    times = [done.times[state] for state in ("received", "checked", "queued", "scoring", "scored")]
    assert times == sorted(times) and len(set(times)) == 4  # checked and queued in the same moment
    assert done.log_tail is not None and done.log_tail.count("\n") == 39  # the tail, not the whole log


def test_a_file_with_problems_fails_with_all_of_them_and_uses_no_quota(store, team, upload):
    submission, _ = upload(team.team, b"broken")
    failed = store.mark_checked(submission.id, ["the input is not 3x32x32", "the output is not 10 scores"])
    assert failed.state == "failed" and failed.fault == "check"
    assert failed.reason == "the input is not 3x32x32; the output is not 10 scores"
    assert store.quota(team.team).used_total == 0
    with pytest.raises(StoreError, match="not waiting for its check"):
        store.mark_checked(submission.id, [])
    with pytest.raises(StoreError, match="failed its check and never reached the queue"):
        store.requeue(submission.id)


def test_quota_counts_the_teams_faults_only(store, team, upload, clock):
    store.limits = Limits(per_day=3, in_total=4, max_queued=5)
    cancelled = queued(store, upload, team.team, b"cancelled")
    store.cancel(cancelled.id, team.team)
    organiser = queued(store, upload, team.team, b"organiser fault")
    store.claim("w", LEASE_S)
    store.fail(organiser.id, "w", "the GPU fell off the bus", "organiser")
    assert store.quota(team.team).used_total == 0
    timed_out = queued(store, upload, team.team, b"too slow")
    store.claim("w", LEASE_S)
    store.fail(timed_out.id, "w", "timed out after 3600 s", "team")
    queued(store, upload, team.team, b"waiting 1")
    queued(store, upload, team.team, b"waiting 2")
    quota = store.quota(team.team)
    assert (quota.used_today, quota.left_today, quota.used_total, quota.left_total, quota.waiting) == (3, 0, 3, 1, 2)
    refused = queued(store, upload, team.team, b"one too many today")
    assert refused.state == "failed" and refused.fault == "quota" and "after 00:00 UTC" in refused.reason
    assert store.quota(team.team).used_total == 3
    clock.advance(86_400)
    assert queued(store, upload, team.team, b"next day").state == "queued"
    assert store.quota(team.team).left_total == 0
    assert "whole quota" in queued(store, upload, team.team, b"over the total").reason


def test_at_most_max_queued_wait_at_once(store, team, upload):
    store.limits = Limits(per_day=10, in_total=10, max_queued=2)
    first = queued(store, upload, team.team, b"1")
    queued(store, upload, team.team, b"2")
    third = queued(store, upload, team.team, b"3")
    assert third.state == "failed" and "at most 2" in third.reason
    store.cancel(first.id, team.team)
    assert queued(store, upload, team.team, b"4").state == "queued"


def test_the_same_file_returns_the_teams_submission_and_flags_another_teams(store, team, upload):
    first, created = upload(team.team, b"same bytes")
    again, created_again = upload(team.team, b"same bytes")
    assert created and not created_again and again.id == first.id
    beta = store.team_by_token(store.add_team("beta"))
    copy, created_copy = upload(beta, b"same bytes")
    assert created_copy and copy.id != first.id and copy.duplicate_of == first.id
    assert first.duplicate_of is None
    store.mark_checked(first.id, [])
    store.cancel(first.id, team.team)
    revived, created_revived = upload(team.team, b"same bytes")
    assert created_revived and revived.id == first.id and revived.state == "received"


def test_only_the_owner_cancels_while_waiting_and_only_the_organiser_while_scoring(store, team, upload):
    submission = queued(store, upload, team.team, b"m")
    beta = store.team_by_token(store.add_team("beta"))
    with pytest.raises(StoreError, match="not yours"):
        store.cancel(submission.id, beta)
    store.claim("w", LEASE_S)
    with pytest.raises(StoreError, match="being scored: only the organiser can stop a scoring in progress"):
        store.cancel(submission.id, team.team)
    assert not store.is_cancelled(submission.id)
    cancelled = store.cancel(submission.id, Team(0, "organiser", "", organiser=True))
    assert cancelled.state == "cancelled" and store.is_cancelled(submission.id)
    assert not store.renew(submission.id, "w", LEASE_S)  # the worker's lease ends with it
    with pytest.raises(StoreError, match="does not hold"):
        store.finish(submission.id, "w", "m", cancelled.sha256, "settings")  # nothing of it is recorded
    with pytest.raises(StoreError, match="cancelled: only one still waiting"):
        store.cancel(submission.id, team.team)


def test_queue_position_counts_those_ahead(store, team, upload, clock):
    store.limits = Limits(10, 10, 10)
    ids = []
    for index in range(3):
        clock.advance(1)
        ids.append(queued(store, upload, team.team, b"q%d" % index).id)
    assert [store.queue_position(i) for i in ids] == [1, 2, 3]
    store.claim("w", LEASE_S)
    assert [store.queue_position(i) for i in ids] == [0, 1, 2]


# --- the leased queue -------------------------------------------------------------------------------------


def _claim_all(db_path: str, worker: str, out: list[int]) -> None:
    store = Store(Path(db_path))
    while (claimed := store.claim(worker, LEASE_S)) is not None:
        out.append(claimed.id)


def _claim_in_process(db_path: str, worker: str, queue: multiprocessing.Queue) -> None:
    got: list[int] = []
    _claim_all(db_path, worker, got)
    queue.put(got)


def _fill(store, upload, team, count: int) -> list[int]:
    store.limits = Limits(count, count, count)
    return [queued(store, upload, team, b"model %d" % index).id for index in range(count)]


def test_two_threads_never_claim_the_same_submission(store, team, upload):
    ids = _fill(store, upload, team.team, 40)
    got: dict[str, list[int]] = {"a": [], "b": []}
    threads = [threading.Thread(target=_claim_all, args=(str(store.db_path), name, got[name])) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got["a"] + got["b"]) == ids


def test_two_processes_never_claim_the_same_submission(store, team, upload):
    ids = _fill(store, upload, team.team, 40)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_claim_in_process, args=(str(store.db_path), name, results))
               for name in ("p1", "p2")]
    for worker in workers:
        worker.start()
    claimed = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sorted(claimed[0] + claimed[1]) == ids
    counts = sqlite3.connect(store.db_path).execute(
        "SELECT COUNT(*) FROM history WHERE state = 'scoring'").fetchone()[0]
    assert counts == 40


def test_an_expired_lease_returns_the_submission_once_then_fails_it_unfounded(store, team, upload, clock):
    submission = queued(store, upload, team.team, b"m")
    store.claim("dead-1", LEASE_S)
    clock.advance(LEASE_S / 2)
    assert store.renew(submission.id, "dead-1", LEASE_S)
    clock.advance(LEASE_S + 1)
    again = store.claim("w2", LEASE_S)
    assert again is not None and again.id == submission.id and again.lease_expiries == 1
    assert not store.renew(submission.id, "dead-1", LEASE_S)
    with pytest.raises(StoreError, match="does not hold"):
        store.finish(submission.id, "dead-1", "x", "a" * 64, "f" * 64)
    clock.advance(LEASE_S + 1)
    assert store.claim("w3", LEASE_S) is None
    failed = store.submission(submission.id)
    assert failed.state == "failed" and failed.fault == "organiser" and "does not use your quota" in failed.reason
    assert store.quota(team.team).used_total == 0
    states = [state for state, _, _ in store.history(submission.id)]
    assert states == ["received", "checked", "queued", "scoring", "queued", "scoring", "failed"]


def test_a_result_is_recorded_once_per_model_and_settings(store, team, upload):
    first = queued(store, upload, team.team, b"shared model")
    beta = store.team_by_token(store.add_team("beta"))
    copy = queued(store, upload, beta, b"shared model")
    store.claim("w", LEASE_S)
    _, recorded = store.finish(first.id, "w", first.name, first.sha256, "settings-1")
    store.claim("w", LEASE_S)
    scored_copy, recorded_copy = store.finish(copy.id, "w", copy.name, copy.sha256, "settings-1")
    assert recorded and not recorded_copy and scored_copy.result_folder == first.name
    assert store.result_for(first.sha256, "settings-1") == first.name
    rows = sqlite3.connect(store.db_path).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert rows == 1
    with pytest.raises(StoreError, match="does not hold"):
        store.finish(copy.id, "w", copy.name, copy.sha256, "settings-1")  # a second finish changes nothing


def test_give_back_puts_it_first_in_line_without_counting_an_expiry(store, team, upload, clock):
    first = queued(store, upload, team.team, b"a")
    clock.advance(1)
    queued(store, upload, team.team, b"b")
    store.claim("w", LEASE_S)
    back = store.give_back(first.id, "w", "the worker was stopped")
    assert back.state == "queued" and back.lease_expiries == 0 and store.queue_position(first.id) == 1


# --- progress and the window ------------------------------------------------------------------------------


def test_progress_events_are_stored_and_summarised(store, team, upload):
    submission, _ = upload(team.team, b"m")
    assert store.latest_progress(submission.id).phase is None
    store.add_event(submission.id, RunPlaced(submission.name, 1, "host-a"))
    store.add_event(submission.id, PhaseStarted("pass", total_images=2000, total_passes=200))
    store.add_event(submission.id, ImagesDone("pass", 1000, 2000, 100, 200))
    progress = store.latest_progress(submission.id)
    assert (progress.phase, progress.done_passes, progress.total_passes, progress.events) == ("pass", 100, 200, 3)
    assert isinstance(progress.latest, ImagesDone) and progress.utc is not None
    assert store.events_of(submission.id)[0] == RunPlaced(submission.name, 1, "host-a")
    store.add_event(submission.id, SubmissionsDone(submission.name, 1, 3))
    assert (store.latest_progress(submission.id).done_runs, store.latest_progress(submission.id).total_runs) == (1, 3)
    store.add_event(submission.id, PhaseStarted("audit", total_images=500))
    progress = store.latest_progress(submission.id)
    assert (progress.phase, progress.done_passes, progress.total_images, progress.done_runs) == ("audit", None, 500, 1)
    with pytest.raises(ValueError, match="unknown progress event"):
        store.add_event(submission.id, {"event": "rm -rf"})


def test_the_window_flag_opens_closes_and_lapses_with_a_dead_worker(store, clock):
    assert not store.window_open()
    store.set_window("w", 10.0)
    assert store.window_open()
    store.set_window("w", None)
    assert not store.window_open()
    store.set_window("w", 10.0)
    clock.advance(11)
    assert not store.window_open()


def test_a_worker_whose_lease_expires_leaves_no_window_open(store, team, upload, clock):
    submission, _ = upload(team.team, b"m")
    store.mark_checked(submission.id, [])
    assert store.claim("dead", 10.0) is not None
    store.set_window("dead", 1000.0)  # a window far longer than the lease: the lease's end still closes it
    clock.advance(11)
    assert store.window_open()
    assert store.claim("next", 10.0) is not None and not store.window_open()


def test_settings_reject_a_deadline_without_utc():
    with pytest.raises(UsageError, match="in UTC with its Z"):
        CompetitionSettings(deadline="2030-01-01T00:00+02:00")


def test_a_file_refused_for_quota_or_failed_by_the_organiser_is_received_again_with_its_history(
        store, team, upload, clock):
    store.limits = Limits(per_day=1, in_total=5, max_queued=5)
    queued(store, upload, team.team, b"today's one")
    refused = queued(store, upload, team.team, b"refused today")
    assert refused.state == "failed" and refused.fault == "quota"
    clock.advance(86_400)
    again, created = upload(team.team, b"refused today")
    assert created and again.id == refused.id and again.state == "received" and again.reason is None
    assert store.mark_checked(again.id, []).state == "queued"
    states = [state for state, _, _ in store.history(again.id)]
    assert states == ["received", "checked", "failed", "received", "checked", "queued"]
    store.claim("w0", LEASE_S)  # today's one, queued first
    assert store.claim("w", LEASE_S).id == again.id
    store.fail(again.id, "w", "the GPU fell off the bus", "organiser")
    revived, created = upload(team.team, b"refused today")
    assert created and revived.id == again.id and revived.state == "received" and revived.fault is None


def test_a_check_failure_or_a_teams_fault_of_the_same_bytes_is_not_received_again(store, team, upload):
    broken, _ = upload(team.team, b"broken")
    store.mark_checked(broken.id, ["not an ONNX file"])
    same, created = upload(team.team, b"broken")
    assert not created and same.state == "failed" and same.fault == "check"
    slow = queued(store, upload, team.team, b"slow")
    store.claim("w", LEASE_S)
    store.fail(slow.id, "w", "timed out after 3600 s", "team")
    assert upload(team.team, b"slow") == (store.submission(slow.id), False)


def test_the_timeline_after_a_retry_lists_each_state_in_the_order_it_happened(store, team, upload, clock):
    submission = queued(store, upload, team.team, b"retried")
    store.claim("w", LEASE_S)
    clock.advance(10)
    store.fail(submission.id, "w", "the GPU fell off the bus", "organiser")
    clock.advance(10)
    store.requeue(submission.id)
    clock.advance(10)
    store.claim("w", LEASE_S)
    now = store.submission(submission.id)
    assert list(now.times) == ["received", "checked", "failed", "queued", "scoring"]
    assert list(now.times.values()) == sorted(now.times.values())
    assert [state for state, _ in now.timeline] == ["received", "checked", "queued", "scoring", "failed", "queued",
                                                     "scoring"]


def test_a_second_server_or_worker_on_one_competition_folder_is_refused_in_one_line(competition):
    from evaluator.serve.competition import hold_lock

    held = hold_lock(competition, "serve")
    with pytest.raises(UsageError, match=rf"^{competition.root} is already served: its serve runs as pid \d+; stop "
                       "that one first"):
        hold_lock(competition, "serve")
    worker = hold_lock(competition, "worker")  # the server's own worker is another role
    held.close()
    hold_lock(competition, "serve").close()  # free again once the first server ends
    worker.close()


def test_a_settings_file_error_names_the_file_once(competition):
    competition.settings_file.write_text(competition.settings_file.read_text() + "\nnot_a_setting = 1\n")
    with pytest.raises(UsageError) as refused:
        load_competition(competition.root)
    assert str(refused.value).count(SETTINGS_NAME) == 1 and "not_a_setting" in str(refused.value)


def test_the_submissions_a_stopped_worker_gave_back_are_named(store, team, upload):
    submission = queued(store, upload, team.team, b"in hand")
    store.claim("host:42", LEASE_S)
    assert store.put_back_by("host:42") == []
    store.give_back(submission.id, "host:42")
    assert [back.id for back in store.put_back_by("host:42")] == [submission.id]
    assert store.put_back_by("host:43") == []
