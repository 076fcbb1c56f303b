"""The issue's check, as a user runs it: a re-sealed forgery fails verify and is not ranked; the genuine passes."""

from __future__ import annotations

import json
import stat

from builders import PowercapTree, colour_images, colour_model, save_npz, twin_of

from evaluator.report.integrity import seal
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME, write_result

FAST = ("--passes", "2", "--idle-seconds", "0", "--cooldown", "0", "--no-plot")


def test_signed_results_and_a_resealed_forgery(tmp_path, cli, monkeypatch):
    made = cli("keys", "init", tmp_path / "keys")
    assert made.exit_code == 0, made.stderr
    private, public = tmp_path / "keys" / "edl-signing.key", tmp_path / "keys" / "edl-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and "fingerprint" in made.stdout
    assert cli("keys", "init", tmp_path / "keys").exit_code == 1  # never overwrites a key
    images, labels = colour_images(300, correct=280)
    data = save_npz(tmp_path / "d.npz", images, labels)
    model = colour_model(tmp_path / "m.onnx")
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[30.0]):
        for name, key in (("genuine", ("--signing-key", private)), ("forged", ("--signing-key", private)),
                          ("unsigned", ())):  # each its own submission: a board names a result by its model.name
            run = cli("score", twin_of(model, tmp_path / f"{name}.onnx"), "--data", data, "--out",
                      tmp_path / "results" / name, *FAST, *key)
            assert run.exit_code == 0, run.stderr
    forged_path = tmp_path / "results" / "forged" / RESULT_NAME
    forged = read_result(forged_path)
    forged.accuracy = 0.995  # the cheat: a better accuracy, and the checksum recomputed as verify does it
    write_result(forged_path, seal(forged))

    assert cli("verify", tmp_path / "results" / "genuine", "--public-key", public).exit_code == 0
    refused = cli("verify", forged_path, "--public-key", public, "--json")
    checks = {c["name"]: c for c in json.loads(refused.stdout)["checks"]}
    assert refused.exit_code == 2 and checks["document checksum"]["outcome"] == "pass"  # the seal was redone
    assert checks["signature by the organiser's key"]["outcome"] == "fail"
    assert "edited after it was signed" in checks["signature by the organiser's key"]["detail"]
    assert cli("verify", forged_path).exit_code == 2  # the arithmetic catches this edit too: accuracy != correct
    unsigned = cli("verify", tmp_path / "results" / "unsigned", "--public-key", public, "--json")
    assert unsigned.exit_code == 2 and "unsigned" in unsigned.stdout

    board = json.loads(cli("leaderboard", tmp_path / "results", "--format", "json", "--public-key", public,
                           "--allow-unchecked-unseen").stdout)  # no --private-data here: a prize board needs it
    rows = {row["name"]: row for row in board["rows"]}
    assert rows["genuine"]["rank"] == 1 and rows["genuine"]["category"] == ">= 90 % (unofficial data)"  # an .npz
    assert rows["forged"]["rank"] is None and rows["forged"]["category"] == "unsigned"
    assert "edited after it was signed" in rows["forged"]["note"]
    assert rows["unsigned"]["category"] == "unsigned" and rows["unsigned"]["note"].startswith("unsigned")


def test_a_bad_key_is_refused_before_anything_is_measured(tmp_path, cli):
    (tmp_path / "key").write_text("not a key")
    images, labels = colour_images(100, correct=100)
    run = cli("score", colour_model(tmp_path / "m.onnx"), "--data", save_npz(tmp_path / "d.npz", images, labels),
              "--out", tmp_path / "o", "--signing-key", tmp_path / "key", *FAST)
    assert run.exit_code == 1 and "not a readable Ed25519 private key" in run.stderr
    assert not (tmp_path / "o").exists()
