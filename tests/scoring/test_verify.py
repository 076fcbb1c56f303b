"""`edl verify`: a result re-checked from its own evidence; every kind of edit is caught."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from builders import PowercapTree, conv_model, fast_config, oracle_images, oracle_model, save_npz

from evaluator.report.integrity import seal
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME, write_result
from evaluator.scoring.pipeline import score
from evaluator.scoring.verify import VerifyOptions, verify_result


@pytest.fixture(scope="module")
def scored_once(module_env, tmp_path_factory):
    """One real scoring under a fake RAPL tree for the whole module: each test edits a copy of it."""
    folder = tmp_path_factory.mktemp("verify")
    images, labels = oracle_images(1000, correct=990)
    module_env.setenv("EDL_POWERCAP_ROOT", str(folder / "pc"))
    with PowercapTree(folder / "pc", package_watts=[50.0]):
        score(conv_model(folder / "m.onnx"), fast_config(save_npz(folder / "d.npz", images, labels), passes=20,
                                                         idle_s=0.3), folder / "o")
    return folder


@pytest.fixture
def scored(scored_once, tmp_path):
    """A copy of the module's scored result (its model, data and samples beside it, as scored)."""
    copy = shutil.copytree(scored_once, tmp_path / "scored", ignore=shutil.ignore_patterns("pc"))
    return copy / "o" / RESULT_NAME


def _outcomes(path, model=None) -> dict[str, str]:
    return {c.name: c.outcome for c in verify_result(path, VerifyOptions(model=model))}


def test_verify_passes_an_untouched_result(scored):
    outcomes = _outcomes(scored)
    assert "fail" not in outcomes.values(), outcomes
    assert outcomes["audit secret"] == "skip"  # a one-off secret: the audit copies cannot be drawn again
    assert outcomes["audit verdict follows from its figures"] == "pass"
    assert outcomes["run 1: energy.cpu_j recomputed from samples"] == "pass"
    assert outcomes["energy.total_j_interval recomputed from the runs"] == "pass"
    assert _outcomes(scored.parent) == outcomes  # the result folder names the same result


def test_verify_catches_an_edited_field(scored):
    doc = json.loads(scored.read_text())
    doc["accuracy"] = 0.999
    scored.write_text(json.dumps(doc))
    outcomes = _outcomes(scored)
    assert outcomes["document checksum"] == "fail" and outcomes["accuracy = correct / images"] == "fail"


def test_verify_catches_resealed_energy_and_tampered_samples(scored):
    result = read_result(scored)
    run = result.runs[0]
    halved = dataclasses.replace(run.energy, total_j=run.energy.total_j / 2, cpu_j=run.energy.cpu_j / 2,
                                 per_pass_j=run.energy.per_pass_j / 2, per_image_j=run.energy.per_image_j / 2)
    forged = dataclasses.replace(result, runs=[dataclasses.replace(run, energy=halved)],
                                 energy=dataclasses.replace(result.energy, total_j=halved.total_j,
                                                            repeats_j=[halved.total_j]))
    write_result(scored, seal(forged))  # a forger who also recomputes the checksum
    outcomes = _outcomes(scored)
    assert outcomes["document checksum"] == "pass"
    assert outcomes["run 1: energy.total_j recomputed from samples"] == "fail"
    samples = scored.parent / run.samples.name
    samples.write_text(samples.read_text().replace(",", ";", 1))
    assert _outcomes(scored)["run 1: samples sha256"] == "fail"


def test_verify_catches_an_edited_interval(scored):
    result = read_result(scored)
    low, high = result.energy.total_j_interval
    moved = dataclasses.replace(result.energy, total_j_interval=[low * 0.9, high * 1.1])  # a tie it never had
    write_result(scored, seal(dataclasses.replace(result, energy=moved)))  # resealed: only the arithmetic tells
    outcomes = _outcomes(scored)
    assert outcomes["document checksum"] == "pass"
    assert outcomes["energy.total_j_interval recomputed from the runs"] == "fail"


def test_verify_cli_exit_codes_and_model_check(scored, tmp_path, cli):
    good = cli("verify", scored)
    assert good.exit_code == 0 and "all checks hold" not in good.stdout  # two checks could not be made
    assert "no check failed, but 2 could not be made: signature, audit secret" in good.stdout
    strict = cli("verify", scored, "--strict")
    assert strict.exit_code == 2 and "2 could not be made (--strict)" in strict.stdout
    bad = cli("verify", scored, "--model", oracle_model(tmp_path / "other.onnx"))
    assert bad.exit_code == 2 and "FAILED" in bad.stdout
    as_json = json.loads(cli("verify", scored, "--json").stdout)
    assert as_json["ok"] is True and {c["outcome"] for c in as_json["checks"]} == {"pass", "skip"}
    assert as_json["summary"].startswith("no check failed, but 2")


def test_verify_says_not_measured_and_writes_categories_one_way(scored, cli):
    """Before: "recorded None, recomputed None" for a domain without a meter, and the category as None or 0.9."""
    checks = {c["name"]: c for c in json.loads(cli("verify", scored, "--json").stdout)["checks"]}
    assert checks["run 1: energy.gpu_j recomputed from samples"]["detail"] == "not measured"
    assert checks["category"]["detail"] == "recorded below every threshold"  # random weights; before: "None"
    assert "None" not in json.dumps([c["detail"] for name, c in checks.items() if "recomputed" in name])


def test_verify_applies_the_gap_and_wrap_rules_to_the_idle_window(scored):
    """A samples file whose idle window hides a possible RAPL wrap: verify recomputes no idle figure and says so."""
    result = read_result(scored)
    idle = next(w for w in result.runs[0].windows if w.name == "idle")
    samples = scored.parent / result.runs[0].samples.name
    header, columns, *rows = samples.read_text().splitlines()
    meta = json.loads(header[2:]) | {"shortest_wrap_s": 0.2}  # a counter that can wrap in 0.2 s: no 0.1 s gap
    kept = [row for row in rows if row.startswith("#") or not idle.start_s < float(row.split(",")[0]) < idle.end_s]
    samples.write_text("\n".join(["# " + json.dumps(meta), columns, *kept]) + "\n")
    checks = {c.name: c for c in verify_result(scored)}
    recomputed = checks["run 1: energy.idle.total_w recomputed from samples"]
    assert recomputed.outcome == "fail" and recomputed.detail.endswith("recomputed not measured")
    assert checks["run 1: energy.above_idle_j recomputed from samples"].outcome == "fail"
    assert checks["run 1: energy.cpu_j recomputed from samples"].outcome == "pass"  # the measured window holds
