"""The phases: open -> frozen at the deadline (uploads and descriptions refused with the reason) -> final scoring
(each team's chosen or best submission scored again with the final repeats, ties rematched) -> published (the
final board signed)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import pytest
from builders import oracle_model

from evaluator.errors import UsageError
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME
from evaluator.serve.competition import open_store
from evaluator.serve.final import BOARD_HTML, BOARD_JSON, board_signature_problem, final_scoring, finalists, publish
from evaluator.serve.phases import phase, refuse_description_reason, refuse_upload_reason
from evaluator.serve.store import Limits
from evaluator.serve.worker import Worker

DEADLINE = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def test_uploads_are_refused_with_the_reason_from_the_deadline_on(competition, store, team, clock):
    settings = competition.settings
    clock.now = DEADLINE.timestamp() - 1
    assert phase(settings, store) == "open"
    assert refuse_upload_reason(settings, store, team.team) is None
    assert refuse_description_reason(settings, store, team.team) is None
    clock.now = DEADLINE.timestamp()
    assert phase(settings, store) == "frozen"
    assert "uploads are closed: the competition closed at 2030-01-01 00:00 UTC" in refuse_upload_reason(
        settings, store, team.team)
    assert "can no longer be replaced" in refuse_description_reason(settings, store, team.team)
    store.set_phase_mark("final")
    assert phase(settings, store, DEADLINE - dt.timedelta(days=1)) == "final"  # a mark outranks the clock
    store.set_phase_mark("published")
    assert phase(settings, store) == "published"


def test_an_upload_is_refused_for_a_revoked_team_the_organiser_and_a_used_quota(competition, store, team, upload,
                                                                                 clock):
    settings = competition.settings
    clock.now = DEADLINE.timestamp() - 86_400
    store.limits = Limits(per_day=1, in_total=5, max_queued=5)
    submission, _ = upload(team.team, b"one")
    store.mark_checked(submission.id, [])
    assert "today's quota of 1 is used" in refuse_upload_reason(settings, store, team.team)
    organiser = store.team_by_token(store.set_organiser_token())
    assert "organiser's token cannot submit" in refuse_upload_reason(settings, store, organiser)
    assert "revoked" in refuse_upload_reason(settings, store, store.revoke_team("alpha"))


def _scored(store, competition, team, path, worker):
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    upload = competition.uploads / f"{digest}.onnx"
    upload.write_bytes(content)
    submission, _ = store.receive(team, digest, len(content), upload)
    store.mark_checked(submission.id, [])
    done = worker.run_once()
    assert done.state == "scored", done.reason
    return done


@pytest.mark.slow
def test_final_scoring_rescoring_the_chosen_or_best_then_publish_a_signed_board(tmp_path, make_competition, cli,
                                                                                 fake_gpu):
    fake_gpu(watts=100.0)
    competition = make_competition(final_repeat=2, deadline="2020-01-01T00:00Z")
    store = open_store(competition)
    worker = Worker(competition)
    alpha = store.team_by_token(store.add_team("alpha"))
    beta = store.team_by_token(store.add_team("beta"))
    store.add_team("gamma")  # nothing scored: not a finalist
    _scored(store, competition, alpha, oracle_model(tmp_path / "a1.onnx"), worker)
    chosen = _scored(store, competition, alpha, oracle_model(tmp_path / "a2.onnx", dtype="uint8"), worker)
    store.choose(chosen.id, alpha)
    beta_best = _scored(store, competition, beta, oracle_model(tmp_path / "b.onnx", layout="NHWC"), worker)
    assert [(f.team, f.submission.id, f.why) for f in finalists(competition, store)] == [
        ("alpha", chosen.id, "chosen"), ("beta", beta_best.id, "best")]
    refused = cli("competition", "publish", competition.root)
    assert refused.exit_code == 2 and "run edl competition final first" in refused.stderr
    store.set_server_pid(os.getpid())  # as edl serve's worker leaves it: the final records this process's CPU
    run = cli("competition", "final", competition.root)
    assert run.exit_code == 0, run.stderr
    assert "alpha" in run.stdout and "chosen" in run.stdout and "scored 2" in run.stdout
    assert phase(competition.settings, store) == "final"
    board = cli("leaderboard", competition.final_results, "--format", "json", "--allow-unaudited")
    assert board.exit_code == 0, board.stderr
    ranked = {row["name"]: row for row in json.loads(board.stdout)["rows"] if row["rank"] is not None}
    assert set(ranked) == {"alpha", "beta"}, board.stdout
    rematched = run.stdout.split("ties rematched: ")[1].splitlines()[0].split(", ") \
        if "ties rematched" in run.stdout else []
    assert {name: row["runs"] for name, row in ranked.items()} == {
        name: 4 if name in rematched else 2 for name in ranked}  # the final repeats, and a rematch's more
    for team_name in ("alpha", "beta"):
        final = read_result(competition.final_results / team_name / RESULT_NAME)
        assert final.model.name == team_name and len(final.runs) == ranked[team_name]["runs"]
        assert all(isinstance(run.fairness.service_cpu_s, float) for run in final.runs)
    assert not store.window_open()
    published = cli("competition", "publish", competition.root)
    assert published.exit_code == 0, published.stderr
    folder = competition.published
    assert (folder / BOARD_HTML).is_file() and "alpha" in (folder / BOARD_JSON).read_text()
    public = competition.root / "keys" / "edl-signing.pub"
    assert board_signature_problem(folder, public) == ""
    (folder / BOARD_JSON).write_text((folder / BOARD_JSON).read_text().replace("alpha", "alpho"))
    assert "edited after it was signed" in board_signature_problem(folder, public)
    assert phase(competition.settings, store) == "published"
    with pytest.raises(UsageError, match="published already"):
        final_scoring(competition, store)
    with pytest.raises(UsageError, match="published already"):
        publish(competition, store)


def test_final_scoring_waits_for_the_deadline_and_the_queue(competition, store, team, upload, clock):
    with pytest.raises(UsageError, match="has not passed"):
        final_scoring(competition, store)
    submission, _ = upload(team.team, b"m")
    store.mark_checked(submission.id, [])
    clock.now = DEADLINE.timestamp() + 1
    with pytest.raises(UsageError, match="1 submission\\(s\\) still wait or score"):
        final_scoring(competition, store)
    store.cancel(submission.id, team.team)
    with pytest.raises(UsageError, match="no team has a scored submission"):
        final_scoring(competition, store)
