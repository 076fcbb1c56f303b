"""What the board sets apart, and ties, said in every format: under review, unaudited, unsigned, tied."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from builders import result_variant

from evaluator.report.integrity import seal
from evaluator.report.leaderboard import BoardEntry, load_results, rank, rank_by_gpu
from evaluator.report.render import render
from evaluator.report.result import RESULT_NAME, write_result

LEGACY = Path(__file__).parent / "legacy"


def _suspect(template, accuracy, total_j, name="lookup"):
    result = result_variant(template, accuracy, total_j, name=name)
    audit = dataclasses.replace(result.audit, verdict="suspect", accuracy=0.12, drop_points=87.0,
                                reason="accuracy 99.0% on the test set but 12.0% on shifted/flipped copies (a drop "
                                       "of 87.0 points, tolerance 3): memorisation suspected")
    return seal(dataclasses.replace(result, audit=audit))


def test_a_result_under_review_shows_every_named_check_not_only_the_failing_one(tmp_path, template):
    from evaluator.report.audit_record import AuditCheck

    result = _suspect(template, 0.99, 1.0)
    checks = [AuditCheck("copies", 87.0, 3.0, "fail", "a drop of 87.0 points"),
              AuditCheck("batch_independence", 0.0, 0.5, "pass", "0 of 1000 changed"),
              AuditCheck("training_probe", None, None, "not_run", "no training images")]
    result = seal(dataclasses.replace(result, audit=dataclasses.replace(result.audit, checks=checks)))
    write_result(tmp_path / "lookup" / RESULT_NAME, result)
    note = _rows(render(rank(load_results(tmp_path)), "json"))["lookup"]["note"]
    assert "checks: copies fail (87 > 3), batch_independence pass (0 <= 0.5), training_probe not_run" in note


def _interval(result, low, high):
    energy = dataclasses.replace(result.energy, total_j_interval=[low, high], repeats_j=[result.total_j] * 3)
    return seal(dataclasses.replace(result, energy=energy))


@pytest.fixture
def board_dir(tmp_path, template):
    results = {
        "honest": _interval(result_variant(template, 0.93, 100.0, name="honest"), 95.0, 105.0),
        "twin": _interval(result_variant(template, 0.92, 102.0, name="twin"), 97.0, 107.0),
        "heavy": _interval(result_variant(template, 0.94, 300.0, name="heavy"), 290.0, 310.0),
        "lookup": _suspect(template, 0.99, 1.0),
    }
    for name, result in results.items():
        write_result(tmp_path / "results" / name / RESULT_NAME, result)
    shutil.copytree(LEGACY / "small_cnn", tmp_path / "results" / "small_cnn")
    return tmp_path / "results"


def _rows(text: str) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(text)["rows"]}


def test_json_sets_the_suspect_apart_names_ties_and_refuses_the_unaudited(board_dir):
    board = rank(load_results(board_dir))
    rows = _rows(render(board, "json"))
    assert rows["lookup"]["rank"] is None and rows["lookup"]["category"] == "under review"
    assert "memorisation suspected" in rows["lookup"]["note"]
    assert rows["small_cnn"]["rank"] is None and rows["small_cnn"]["category"] == "unaudited"
    assert "--allow-unaudited" in rows["small_cnn"]["note"]
    assert rows["honest"]["rank"] == rows["twin"]["rank"] == 1 and rows["heavy"]["rank"] == 3
    assert rows["honest"]["tied_with"] == ["twin"] and rows["heavy"]["tied_with"] == []
    assert rows["honest"]["audit_pct"] == 93.0 and rows["honest"]["energy_kj_low"] == 0.095
    allowed = _rows(render(rank(load_results(board_dir), allow_mixed=True, allow_unaudited=True), "json"))
    old = allowed["small_cnn"]
    assert old["category"] == "unranked (unofficial data)" and old["audit_pct"] is None  # 74.3 %: below 90


@pytest.mark.parametrize("fmt", ["csv", "md", "html"])
def test_every_format_says_it_too(board_dir, fmt):
    text = render(rank(load_results(board_dir)), fmt)
    assert "under review" in text and "memorisation suspected" in text and "unaudited" in text
    assert "tied with twin" not in text and "tied with honest" not in text  # before: the note repeated tied_with
    said = {"csv": ",twin,", "md": "| twin |", "html": "<td>twin</td>"}
    assert said[fmt] in text
    if fmt == "csv":
        rows = {row["name"]: row for row in csv.DictReader(io.StringIO(text)) if row["name"]}
        assert rows["lookup"]["rank"] == "" and rows["honest"]["tied_with"] == "twin"
    if fmt == "html":
        assert len(re.findall(r'class="errorbar"', text)) == 3  # honest, twin, heavy (the legacy point has none)
        assert '<table class="board" data-category="under review">' in text


def test_one_board_per_gpu_model(tmp_path, template):
    for name, gpu, energy in (("a", "H200", 10.0), ("b", "H200", 20.0), ("c", "A100", 5.0)):
        write_result(tmp_path / name / RESULT_NAME, result_variant(template, 0.95, energy, gpu=gpu, name=name))
    boards = rank_by_gpu(load_results(tmp_path))
    assert sorted(boards) == ["A100", "H200"]
    assert [e.name for e in boards["H200"].categories[0.95]] == ["a", "b"]
    document = json.loads(render(boards, "json"))
    assert document["by"] == "gpu" and [b["gpu"] for b in document["boards"]] == ["A100", "H200"]
    assert "## H200" in render(boards, "md") and "<h2>A100</h2>" in render(boards, "html")
    assert {row["gpu"] for row in csv.DictReader(io.StringIO(render(boards, "csv")))} == {"A100", "H200"}


def test_start_temperatures_far_apart_are_a_warning(template):
    warm = result_variant(template, 0.95, 10.0, name="warm")
    warm = dataclasses.replace(warm, runs=[dataclasses.replace(warm.runs[0], start_temp_c=48.0)])
    cool = result_variant(template, 0.95, 12.0, name="cool")
    cool = dataclasses.replace(cool, runs=[dataclasses.replace(cool.runs[0], start_temp_c=41.0)])
    board = rank([BoardEntry("warm", warm), BoardEntry("cool", cool)])
    assert len(board.warnings) == 1 and "started 7.0 C apart" in board.warnings[0]
    assert "started 7.0 C apart" in render(board, "md")
