"""One module per document, one energy totals record, ``passes`` once (schema 3), and schema-2 results kept whole.

``legacy/schema2`` was written by edl's schema-2 scorer (two runs on a fake GPU, signed with the key
whose public half lies beside it, and cleared by a signed review decision): it must read, verify
and rank as it did, with its seal, its signature and the decision bound to it all still holding.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from evaluator.errors import ResultError
from evaluator.report.energy import per_pass_and_image
from evaluator.report.integrity import seal, seal_holds
from evaluator.report.leaderboard import batch_warnings, load_results, rank
from evaluator.report.reader import read_batch, read_result
from evaluator.report.records import EnergyTotals, RunEnergy
from evaluator.report.result import RESULT_NAME, SCHEMA_VERSION, Energy, result_json, write_result
from evaluator.report.review import read_decisions
from evaluator.report.signing import load_public, signature_problem

SCHEMA2 = Path(__file__).parent / "legacy" / "schema2"
# What the schema-2 scorer recorded (read from the document itself with edl 0.2's reader).
TOTAL_J, REPEATS_J = 0.07881722262482072, [0.03718863733502076, 0.12044580791462067]


@pytest.fixture
def schema2(tmp_path) -> Path:
    shutil.copytree(SCHEMA2, tmp_path / "schema2")
    return tmp_path / "schema2"


def test_a_schema_2_result_reads_with_its_figures_seal_signature_and_review(schema2):
    result = read_result(schema2 / "oracle")
    assert result.schema_version == SCHEMA_VERSION and result.written_schema == 2
    assert result.passes == result.config.passes == 3 and len(result.runs) == 2
    assert result.total_j == TOTAL_J and result.energy is not None and result.energy.repeats_j == REPEATS_J
    assert result.energy.per_pass_j == pytest.approx(TOTAL_J / 3)
    assert seal_holds(result), "its own seal covers its own bytes, not a rewritten form"
    assert signature_problem(result, load_public(schema2 / "edl-signing.pub")) == ""
    [standing] = read_decisions(schema2 / "oracle", result, load_public(schema2 / "edl-signing.pub"))
    assert standing.holds and standing.decision.decision == "clear"


def test_a_schema_2_result_ranks_as_it_did(schema2):
    board = rank(load_results(schema2, load_public(schema2 / "edl-signing.pub")))
    [entry] = board.ranked
    assert (entry.name, entry.rank, entry.total_j, entry.category) == ("oracle", 1, TOTAL_J, 0.95)
    assert entry.note.startswith("cleared by the organiser") and not entry.not_signed


def test_an_edited_schema_2_result_is_caught_on_disk_and_in_memory(schema2):
    document = json.loads((schema2 / "oracle" / RESULT_NAME).read_text())
    document["runs"][1]["energy"]["total_j"] = 0.001
    (schema2 / "oracle" / RESULT_NAME).write_text(json.dumps(document))
    assert not seal_holds(read_result(schema2 / "oracle"))
    shutil.copy(SCHEMA2 / "oracle" / RESULT_NAME, schema2 / "oracle" / RESULT_NAME)
    read = read_result(schema2 / "oracle")
    read.accuracy = 1.0  # changed after reading: the older bytes no longer cover it
    assert not seal_holds(read)
    assert not seal_holds(dataclasses.replace(read_result(schema2 / "oracle"), accuracy=1.0))


def test_a_schema_2_result_whose_passes_disagree_is_refused(schema2):
    document = json.loads((schema2 / "oracle" / RESULT_NAME).read_text())
    document["runs"][0]["passes"] = 7
    (schema2 / "oracle" / RESULT_NAME).write_text(json.dumps(document))
    with pytest.raises(ResultError, match=r"result.json: its passes \(\[3, 7, 3\]\) differ from its config's \(3\)"):
        read_result(schema2 / "oracle")
    [untrusted] = rank(load_results(schema2)).untrusted  # listed apart with the reason, never ranked
    assert untrusted.name == "oracle" and untrusted.reason.startswith("its passes ([3, 7, 3]) differ")


def test_passes_is_stored_once_and_a_rewritten_old_result_is_todays_schema(schema2, tmp_path):
    upgraded = read_result(schema2 / "oracle")
    document = result_json(seal(upgraded))
    assert "passes" not in document and all("passes" not in run for run in document["runs"])
    assert document["config"]["passes"] == 3 and document["schema_version"] == SCHEMA_VERSION
    write_result(tmp_path / RESULT_NAME, seal(upgraded))
    again = read_result(tmp_path)
    assert again.written_schema == SCHEMA_VERSION and seal_holds(again) and again.total_j == TOTAL_J


def test_one_totals_record_keeps_the_energy_keys_and_divides_once():
    totals = {f.name for f in dataclasses.fields(EnergyTotals)}
    assert totals == {"total_j", "total_domains", "missing_domains", "gpu_j", "cpu_j", "dram_j", "per_pass_j",
                      "per_image_j", "reason"}
    assert totals <= {f.name for f in dataclasses.fields(RunEnergy)} & {f.name for f in dataclasses.fields(Energy)}
    assert per_pass_and_image(600.0, 200, 1000) == (3.0, 0.003)
    assert per_pass_and_image(None, 200, 1000) == (None, None)  # never 0 J for a missing total


def test_batch_json_is_read_typed_and_a_broken_one_says_why(tmp_path):
    (tmp_path / "batch.json").write_text(json.dumps({"directory": "subs"}))
    with pytest.raises(ResultError, match=r"batch.json: batch: missing field 'data'"):
        read_batch(tmp_path)
    assert batch_warnings(tmp_path) == [f"{tmp_path / 'batch.json'} cannot be read (batch: missing field 'data'): "
                                        "the batch's reference drift is unknown"]


def test_a_schema_2_result_verifies_as_it_did(schema2):
    from evaluator.scoring.verify import VerifyOptions, verify_result

    checks = verify_result(schema2 / "oracle", VerifyOptions(public_key=schema2 / "edl-signing.pub"))
    outcomes = {check.name: check.outcome for check in checks}
    assert outcomes["document checksum"] == outcomes["signature by the organiser's key"] == "pass"
    assert [outcome for name, outcome in outcomes.items() if name.startswith("review decision")] == ["pass"]
    assert outcomes["run 2: energy.total_j recomputed from samples"] == "pass"
    assert outcomes["run 1: per_pass_j x passes = total_j"] == outcomes["energy.total_j_interval recomputed from the "
                                                                       "runs"] == "pass"
    assert [name for name, outcome in outcomes.items() if outcome != "pass"] == ["audit secret"]  # a one-off secret
    assert len(checks) == 44  # every check edl 0.2's verify made on it
