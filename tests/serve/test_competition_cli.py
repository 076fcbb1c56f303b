"""``edl competition init`` and ``edl team add/list/revoke`` run as an organiser runs them (in process)."""

from __future__ import annotations

import json
import re

from evaluator.serve.competition import open_store
from evaluator.serve.settings import SETTINGS_NAME, load_competition

TOKEN = re.compile(r"token (\S{40,})$", re.MULTILINE)


def test_init_writes_the_settings_and_prints_the_organiser_token_once(tmp_path, cli):
    folder = tmp_path / "cup"
    run = cli("competition", "init", folder, "--name", "Green cup", "--deadline", "2030-06-01T12:00Z",
              "--per-day", "3", "--thresholds", "90,95")
    assert run.exit_code == 0, run.stderr
    token = TOKEN.search(run.stdout).group(1)
    competition = load_competition(folder)
    settings = competition.settings
    assert (settings.name, settings.per_day, settings.thresholds) == ("Green cup", 3, (0.90, 0.95))
    assert settings.deadline == "2030-06-01T12:00Z"
    assert open_store(competition).is_organiser(token)
    assert token not in (folder / SETTINGS_NAME).read_text()
    again = cli("competition", "init", folder, "--deadline", "2030-06-01T12:00Z")
    assert again.exit_code == 2 and again.stderr.strip().startswith("error: ") and "already holds" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_init_refuses_bad_settings_in_one_line_and_writes_nothing(tmp_path, cli):
    for args, words in ((("--deadline", "next friday"), "--deadline 'next friday': give the deadline in UTC"),
                        ((), "--deadline '': give the deadline in UTC"),
                        (("--deadline", "2030-01-01T00:00Z", "--max-queued", "0"), "--max-queued 0: must be 1"),
                        (("--deadline", "2030-01-01T00:00Z", "--thresholds", "0.9"), "percentages are expected")):
        run = cli("competition", "init", tmp_path / "bad", *args)
        assert run.exit_code == 2, (args, run.stdout)
        assert run.stderr.strip() == f"error: {run.stderr.strip().removeprefix('error: ')}"
        assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not (tmp_path / "bad").exists()


def test_teams_are_added_listed_and_revoked(competition, cli):
    added = cli("team", "add", "alpha", "--competition", competition.root)
    assert added.exit_code == 0, added.stderr
    token = TOKEN.search(added.stdout).group(1)
    store = open_store(competition)
    assert store.team_by_token(token).name == "alpha"
    listed = cli("team", "list", "--competition", competition.root, "--json")
    rows = json.loads(listed.stdout)
    assert [(row["name"], row["revoked_utc"], row["quota_left"]) for row in rows] == [("alpha", None, 50)]
    assert token not in listed.stdout
    revoked = cli("team", "revoke", "alpha", "--competition", competition.root)
    assert revoked.exit_code == 0 and store.team_by_token(token) is None
    assert "revoked" in cli("team", "list", "--competition", competition.root).stdout


def test_team_commands_refuse_bad_input_in_one_line(tmp_path, competition, cli, monkeypatch):
    cli("team", "add", "alpha", "--competition", competition.root)
    for args, words in ((("team", "add", "alpha"), "team 'alpha' exists already"),
                        (("team", "add", "../etc"), "team name '../etc'"),
                        (("team", "revoke", "nobody"), "no team named 'nobody'")):
        run = cli(*args, "--competition", competition.root)
        assert run.exit_code == 2 and words in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    missing = cli("team", "list", "--competition", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "run edl competition init" in missing.stderr
    monkeypatch.setenv("EDL_COMPETITION", str(competition.root))
    assert "alpha" in cli("team", "list").stdout
