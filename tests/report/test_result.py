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
from evaluator.scoring.pipeline import score

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
    ({"kind": "edl-result", "schema_version": 3, "status": "scored"}, "malformed result"),
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


V2 = LEGACY / "v2"  # a signed result written by the schema-2 evaluator on a fake GPU, its key, a decision on it


def test_schema_2_results_read_with_the_gpu_named_by_one_identity_record(tmp_path):
    from evaluator.power.gpu import GpuIdentity

    result = read_result(V2 / "colour")
    board = GpuIdentity("GPU-aaaaaaaa-1111-4111-8111-111111111111", "Fake GPU", "SN-aaaaaaaa", "00000000:5E:00.0")
    assert result.schema_version == 3 and result.host.gpu == result.runs[0].host.gpu == board
    start = result.runs[0].fairness.gpu_start
    assert start.identity == dataclasses.replace(board, index=0) and start.temperature_c == 40
    assert result.gpu_model == "Fake GPU" and seal_holds(result)  # its seal covers the bytes it was written as
    assert not seal_holds(dataclasses.replace(result, warnings=["added later"]))  # a changed copy is a new document
    assert seal_holds(seal(result)) and seal(result).integrity != result.integrity  # sealed anew: today's form
    document = json.loads((V2 / "colour" / RESULT_NAME).read_text())
    assert document["schema_version"] == 2 and "gpu_uuid" in document["host"]  # the file itself is never rewritten
    document["host"]["gpu_serial"] = "SN-edited"
    (tmp_path / RESULT_NAME).write_text(json.dumps(document))
    assert not seal_holds(read_result(tmp_path))  # an edit of the old form still shows


def test_a_signed_schema_2_result_verifies_ranks_signed_and_keeps_its_review_decisions(tmp_path):
    import shutil

    from evaluator.report.leaderboard import load_results, rank_by_gpu
    from evaluator.report.signing import load_public, signature_problem
    from evaluator.scoring.verify import VerifyOptions, verify_result

    shutil.copytree(V2, tmp_path / "v2")
    key = load_public(V2 / "edl-signing.pub")
    assert signature_problem(read_result(V2 / "colour"), key) == ""  # re-sealing it in schema 3 would break this
    outcomes = {c.name: c.outcome for c in verify_result(tmp_path / "v2" / "colour",
                                                             VerifyOptions(public_key=V2 / "edl-signing.pub"))}
    assert outcomes["document checksum"] == outcomes["signature by the organiser's key"] == "pass"
    assert outcomes["run 1: energy.gpu_j recomputed from samples"] == "pass" and "fail" not in outcomes.values()
    boards = rank_by_gpu(load_results(tmp_path / "v2", key))
    assert list(boards) == ["Fake GPU"] and [e.name for e in boards["Fake GPU"].ranked] == ["colour"]
    (tmp_path / "v2" / "colour" / "review").mkdir()
    shutil.copy(V2 / "disqualify-decision.json", tmp_path / "v2" / "colour" / "review" / "decision-1.json")
    board = rank_by_gpu(load_results(tmp_path / "v2", key))["Fake GPU"]
    assert board.ranked == [] and [e.name for e in board.disqualified] == ["colour"]  # bound to its digest as written


def test_the_gpu_uuid_is_a_field_of_exactly_one_record_type():
    """One fact, one home: wherever a GPU is named, it embeds the identity record; none spells the UUID again."""
    import importlib
    import pkgutil

    import evaluator
    from evaluator.power.gpu import GpuIdentity

    holders = set()
    for found in pkgutil.walk_packages(evaluator.__path__, "evaluator."):
        if found.name.endswith("__main__"):
            continue  # it runs the command line
        module = importlib.import_module(found.name)
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                if any("uuid" in f.name for f in dataclasses.fields(value)):
                    holders.add(value)
    assert holders == {GpuIdentity}
