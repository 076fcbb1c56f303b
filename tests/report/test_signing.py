"""Signed results: a forgery that even recomputes the seal fails; only the organiser's key makes a result rank."""

from __future__ import annotations

import dataclasses
import stat

import pytest
from builders import result_variant

from evaluator.errors import ResultError
from evaluator.report.integrity import seal, seal_holds
from evaluator.report.leaderboard import load_results, rank
from evaluator.report.result import RESULT_NAME, write_result
from evaluator.report.signing import finalise, init_keys, load_private, load_public, sign, signature_problem


@pytest.fixture
def keys(tmp_path):
    private, public = init_keys(tmp_path / "keys")
    return load_private(private), load_public(public)


def test_keys_are_made_with_safe_modes_and_never_overwritten(tmp_path):
    private, public = init_keys(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ResultError, match="already holds a signing key"):
        init_keys(tmp_path / "k")
    with pytest.raises(ResultError, match="not a readable Ed25519 public key"):
        load_public(private)


def test_a_resealed_forgery_fails_and_the_genuine_result_passes(tmp_path, template, keys):
    private, public = keys
    genuine = finalise(result_variant(template, 0.915, 100.0), private)
    assert seal_holds(genuine) and signature_problem(genuine, public) == ""
    forged = seal(dataclasses.replace(genuine, accuracy=0.995))  # edited, and the checksum recomputed
    assert seal_holds(forged)
    assert "edited after it was signed" in signature_problem(forged, public)
    assert signature_problem(seal(dataclasses.replace(genuine, signature=None)), public).startswith("unsigned")
    stranger = load_private(init_keys(tmp_path / "stranger")[0])
    assert "signed by another key" in signature_problem(sign(genuine, stranger), public)


def test_the_leaderboard_ranks_only_what_the_organisers_key_signed(tmp_path, template, keys):
    private, public = keys
    genuine = finalise(result_variant(template, 0.915, 100.0, name="genuine"), private)
    write_result(tmp_path / "genuine" / RESULT_NAME, genuine)
    signed = finalise(result_variant(template, 0.915, 50.0, name="forged"), private)
    write_result(tmp_path / "forged" / RESULT_NAME, seal(dataclasses.replace(signed, accuracy=0.995)))
    unsigned = finalise(result_variant(template, 0.93, 10.0, name="unsigned"), None)
    write_result(tmp_path / "unsigned" / RESULT_NAME, unsigned)
    board = rank(load_results(tmp_path, public))
    assert [e.name for e in board.categories[0.90]] == ["genuine"] and board.categories[0.99] == []
    reasons = {e.name: e.reason for e in board.unsigned}
    assert "edited after it was signed" in reasons["forged"] and reasons["unsigned"].startswith("unsigned")
    with_seal_only = rank(load_results(tmp_path))  # without the key only the seal is checked: it holds
    assert {e.name for e in with_seal_only.categories[0.99]} == {"forged"}  # what a seal alone cannot stop
