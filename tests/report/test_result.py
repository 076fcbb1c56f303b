"""The result document: one typed writer and reader, its schema shipped, its seal, and refusals of foreign files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from builders import fast_config, oracle_images, oracle_model, save_npz

from evaluator.errors import ResultError
from evaluator.report.integrity import canonical_bytes, seal, seal_holds
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME, Result, result_json, result_schema, write_result
from evaluator.scoring.score import score

SCHEMA_FILE = Path(__file__).parents[2] / "evaluator" / "report" / "result.schema.json"


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scored")
    images, labels = oracle_images(300, correct=280)
    score(oracle_model(folder / "m.onnx"), fast_config(save_npz(folder / "d.npz", images, labels)), folder / "o")
    return folder / "o" / RESULT_NAME


def test_the_shipped_schema_is_the_one_the_code_implies():
    """evaluator/report/result.schema.json is generated from the dataclasses: regenerate it with `edl schema`."""
    assert json.loads(SCHEMA_FILE.read_text()) == result_schema()


def test_a_written_result_validates_against_its_schema_and_reads_back_equal(scored):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    document = json.loads(scored.read_text())
    jsonschema.validate(document, result_schema())
    result = read_result(scored)
    assert result_json(result) == document and seal_holds(result)


def test_the_seal_covers_every_field_but_itself(scored):
    result = read_result(scored)
    assert b'"integrity"' not in canonical_bytes(result)
    edited = dataclasses.replace(result, warnings=[*result.warnings, "added later"])
    assert not seal_holds(edited) and seal_holds(seal(edited))


@pytest.mark.parametrize(("document", "message"), [
    ({"kind": "something-else"}, "not an edl result document"),
    ({"kind": "edl-result", "schema_version": 7}, "result schema 7 is not one this edl reads"),
    ({"kind": "edl-result", "schema_version": 1}, "malformed result"),
    ({"kind": "edl-result", "schema_version": 2, "status": "scored"}, "malformed result"),
])
def test_foreign_old_and_broken_documents_are_refused_with_a_reason(tmp_path, document, message):
    path = tmp_path / RESULT_NAME
    path.write_text(json.dumps(document))
    with pytest.raises(ResultError, match=message):
        read_result(path)
    path.write_text("{not json")
    with pytest.raises(ResultError, match="not a readable JSON result"):
        read_result(tmp_path)


def test_a_failure_is_the_same_type_with_a_reason(scored, tmp_path):
    from evaluator.scoring.hostinfo import versions
    from evaluator.scoring.records import failed_result

    template = read_result(scored)
    failed = seal(failed_result("team", tmp_path / "missing.onnx", "timed out after 5 s", template.config,
                                template.data, versions(), 5.0, 5.0))
    write_result(tmp_path / RESULT_NAME, failed)
    again = read_result(tmp_path)
    assert isinstance(again, Result) and again.status == "failed" and again.reason == "timed out after 5 s"
    assert again.timeout_s == 5.0 and again.accuracy is None and again.runs == [] and seal_holds(again)
