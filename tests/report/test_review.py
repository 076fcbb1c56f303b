"""The organiser's review: signed decisions bound to one result, append-only, shown on every board."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from builders import result_variant

from evaluator.errors import ResultError
from evaluator.report.integrity import seal
from evaluator.report.leaderboard import load_results, rank
from evaluator.report.render import render
from evaluator.report.result import RESULT_NAME, write_result
from evaluator.report.review import read_decisions, record
from evaluator.report.review_record import REVIEW_FOLDER
from evaluator.report.signing import finalise, init_keys, load_private, load_public


@pytest.fixture
def keys(tmp_path):
    private, public = init_keys(tmp_path / "keys")
    return private, public


def _suspect(template, name):
    result = result_variant(template, 0.99, 1.0, name=name)
    audit = dataclasses.replace(result.audit, verdict="suspect", reason="12.0 % on the audit copies: memorisation")
    return seal(dataclasses.replace(result, audit=audit))


@pytest.fixture
def folder(tmp_path, template, keys):
    root = tmp_path / "results"
    key = load_private(keys[0])
    write_result(root / "lookup" / RESULT_NAME, finalise(_suspect(template, "lookup"), key))
    write_result(root / "honest" / RESULT_NAME, finalise(result_variant(template, 0.95, 50.0, name="honest"), key))
    return root


def test_clear_then_disqualify_keeps_the_history_and_the_latest_counts(folder, keys, template):
    key, public = load_private(keys[0]), load_public(keys[1])
    board = rank(load_results(folder, public))
    assert [e.name for e in board.under_review] == ["lookup"]
    lookup = load_results(folder, public)[1].result
    first = record(folder / "lookup", lookup, "clear", "the architecture stores no test images", key)
    board = rank(load_results(folder, public))
    (cleared,) = board.categories[0.99]
    assert cleared.name == "lookup" and "cleared by the organiser" in cleared.note
    second = record(folder / "lookup", lookup, "disqualify", "trained on the test set", key)
    assert first != second and first.is_file() and second.is_file()  # append-only: a new file per decision
    board = rank(load_results(folder, public))
    (out,) = board.disqualified
    assert "disqualified by the organiser" in out.reason and "trained on the test set" in out.reason
    assert "review history" in out.reason and "clear: the architecture" in out.reason
    for fmt in ("csv", "md", "json", "html"):
        text = render(board, fmt)
        assert "disqualified" in text and "trained on the test set" in text, fmt
    with pytest.raises(ResultError, match="nothing to clear"):
        record(folder / "honest", load_results(folder, public)[0].result, "clear", "x", key)


def test_a_decision_moved_to_another_result_or_signed_by_a_stranger_is_ignored(folder, keys, tmp_path):
    key, public = load_private(keys[0]), load_public(keys[1])
    entries = {e.name: e for e in load_results(folder, public)}
    path = record(folder / "honest", entries["honest"].result, "disqualify", "moved", key)
    (folder / "lookup" / REVIEW_FOLDER).mkdir()
    shutil.copy(path, folder / "lookup" / REVIEW_FOLDER / path.name)  # the disqualification, beside another result
    stranger = load_private(init_keys(tmp_path / "stranger")[0])
    record(folder / "lookup", entries["lookup"].result, "clear", "cleared by a stranger", stranger)
    standings = read_decisions(folder / "lookup", entries["lookup"].result, public)
    problems = sorted(s.problem.split(" (")[0] for s in standings)
    assert problems == ["bound to another result", "signed by another key"]
    board = rank(load_results(folder, public))
    assert [e.name for e in board.under_review] == ["lookup"] and "ignored" in board.under_review[0].reason
    edited = json.loads(path.read_text()) | {"why": "something else"}
    path.write_text(json.dumps(edited))
    assert "does not match the decision" in read_decisions(folder / "honest", entries["honest"].result,
                                                            public)[0].problem


def test_edl_review_on_the_command_line(folder, keys, cli):
    run = cli("review", folder / "lookup", "--clear", "--why", "a real CNN", "--signing-key", keys[0])
    assert run.exit_code == 0, run.stderr
    assert "recorded" in run.stdout and "clear: a real CNN" in run.stdout
    both = cli("review", folder / "lookup", "--clear", "--disqualify", "--why", "x", "--signing-key", keys[0])
    assert both.exit_code == 2 and "one of --clear or --disqualify" in both.stderr
    board = cli("leaderboard", folder, "--public-key", keys[1], "--format", "md", "--allow-unchecked-unseen")
    assert board.exit_code == 0 and "cleared by the organiser" in board.stdout
    checked = cli("verify", folder / "lookup", "--public-key", keys[1])
    assert "review decision" in checked.stdout
