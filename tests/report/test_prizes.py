"""A board that decides prizes ranks only results checked on unseen images; the rest are listed apart."""

from __future__ import annotations

import dataclasses
import json

from builders import result_variant

from evaluator.report.audit_record import PrivateCheck
from evaluator.report.integrity import seal
from evaluator.report.leaderboard import load_results, rank
from evaluator.report.prizes import UNCHECKED_UNSEEN, checked_on_unseen
from evaluator.report.render import render
from evaluator.report.result import RESULT_NAME, write_result
from evaluator.report.signing import finalise, init_keys, load_private


def _checked(result):
    private = PrivateCheck("p" * 64, 2000, 1800, 0.90, 3.0, 9.0, expected_accuracy=0.88, fit="probit")
    return seal(dataclasses.replace(result, audit=dataclasses.replace(result.audit, private=private)))


def _results(template):
    return {"checked": _checked(result_variant(template, 0.93, 100.0, name="checked")),
            "checked-heavy": _checked(result_variant(template, 0.94, 300.0, name="checked-heavy")),
            "unchecked": result_variant(template, 0.92, 50.0, name="unchecked")}


def test_the_predicate(template):
    results = _results(template)
    assert checked_on_unseen(results["checked"]) and not checked_on_unseen(results["unchecked"])
    assert not checked_on_unseen(dataclasses.replace(results["checked"], audit=None))


def test_a_prize_board_sets_the_unchecked_apart_and_an_ordinary_board_does_not(tmp_path, template):
    for name, result in _results(template).items():
        write_result(tmp_path / name / RESULT_NAME, result)
    prize = rank(load_results(tmp_path), allow_mixed=False, require_unseen=True)
    assert [e.name for e in prize.unchecked_unseen] == ["unchecked"]
    assert [e.name for members in prize.categories.values() for e in members] == ["checked", "checked-heavy"]
    rows = {row["name"]: row for row in json.loads(render(prize, "json"))["rows"]}
    assert rows["unchecked"]["category"] == UNCHECKED_UNSEEN and rows["unchecked"]["rank"] is None
    assert rows["unchecked"]["note"].startswith("generalization not checked on unseen images")
    ordinary = rank(load_results(tmp_path), allow_mixed=True)
    assert not ordinary.unchecked_unseen and ordinary.categories[0.9][0].name == "unchecked"


def test_the_cli_decides_prizes_with_the_organisers_key_unless_told_otherwise(cli, tmp_path, template):
    private, public = init_keys(tmp_path / "keys")
    key = load_private(private)
    for name, result in _results(template).items():
        write_result(tmp_path / "results" / name / RESULT_NAME, finalise(result, key))
    board = cli("leaderboard", tmp_path / "results", "--format", "json", "--public-key", public)
    rows = {row["name"]: row for row in json.loads(board.stdout)["rows"]}
    assert board.exit_code == 0 and rows["unchecked"]["category"] == UNCHECKED_UNSEEN
    assert rows["checked"]["rank"] == 1 and "--allow-unchecked-unseen" in rows["unchecked"]["note"]
    for text in (render_format(cli, tmp_path, public, fmt) for fmt in ("csv", "md", "html")):
        assert "generalization not checked on unseen images" in text
    allowed = cli("leaderboard", tmp_path / "results", "--format", "json", "--public-key", public,
                  "--allow-unchecked-unseen", "--allow-mixed")
    rows = {row["name"]: row for row in json.loads(allowed.stdout)["rows"]}
    assert rows["unchecked"]["rank"] == 1 and rows["checked"]["rank"] == 2


def render_format(cli, tmp_path, public, fmt: str) -> str:
    return cli("leaderboard", tmp_path / "results", "--format", fmt, "--public-key", public).stdout


def test_a_private_check_written_before_the_fit_still_reads(tmp_path, template):
    """Results of the fixed 10-point rule carry only the first six fields (and the old option's value)."""
    from evaluator.report.reader import read_result
    from evaluator.report.result import result_json

    document = result_json(_checked(result_variant(template, 0.93, 100.0)))
    private = document["audit"]["private"]
    document["audit"]["private"] = {key: private[key] for key in list(private)[:6]}
    audit_config = document["config"]["audit"]
    del audit_config["private_tolerance_sd"]
    audit_config["private_tolerance_points"] = 10.0
    (tmp_path / RESULT_NAME).write_text(json.dumps(document))
    old = read_result(tmp_path / RESULT_NAME).audit.private
    assert old.expected_accuracy is None and old.fit == "" and old.tolerance_points == 9.0
    assert checked_on_unseen(read_result(tmp_path / RESULT_NAME))
