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
                                template.data, versions(), tmp_path, 5.0, 5.0))
    write_result(tmp_path / RESULT_NAME, failed)
    again = read_result(tmp_path)
    assert isinstance(again, Result) and again.status == "failed" and again.reason == "timed out after 5 s"
    assert again.timeout_s == 5.0 and again.accuracy is None and again.runs == [] and seal_holds(again)


LEGACY = Path(__file__).parent / "legacy"  # written by edl 0.1 (schema 1): a scored result with its samples, a failure


def test_schema_1_results_are_read_into_todays_type(tmp_path):
    from evaluator.report.legacy import LEGACY_NOTE

    scored = read_result(LEGACY / "small_cnn")
    assert scored.scored and scored.schema_version == 3 and scored.written_schema == 1
    assert scored.audit is None and LEGACY_NOTE in scored.warnings
    assert (scored.correct, scored.accuracy, scored.batch_size, scored.passes) == (743, 0.743, 250, 20)
    assert scored.total_j == pytest.approx(444.8366) and scored.energy.repeats_j == [scored.total_j]
    assert scored.runs[0].energy.cpu_j == scored.total_j and scored.runs[0].samples.name == "samples.csv"
    assert scored.config.meter.sample_period_ms == 10.0 and scored.config.meter.idle_s == 0.5
    assert seal_holds(scored)  # its own seal held, so it is sealed anew in today's form
    failed = read_result(LEGACY / "bad")
    assert failed.status == "failed" and "not an ONNX model" in failed.reason and seal_holds(failed)
    edited = json.loads((LEGACY / "small_cnn" / RESULT_NAME).read_text())
    edited["accuracy"] = 0.999
    (tmp_path / RESULT_NAME).write_text(json.dumps(edited))
    assert not seal_holds(read_result(tmp_path))


def test_verify_rechecks_a_schema_1_result_from_its_samples(tmp_path):
    import shutil

    from evaluator.scoring.verify import verify_result

    shutil.copytree(LEGACY / "small_cnn", tmp_path / "small_cnn")
    outcomes = {c.name: c.outcome for c in verify_result(tmp_path / "small_cnn")}
    assert outcomes["run 1: energy.cpu_j recomputed from samples"] == "pass"
    assert outcomes["energy.total_j_interval recomputed from the runs"] == "skip"  # schema 1 had no interval
    assert outcomes["generalization audit"] == "skip" and "fail" not in outcomes.values()
