"""The organiser's review of a result: a signed decision to clear it or disqualify it, kept forever.

A result the generalization audit fails is never ranked on its own; only the organiser may clear it
(it is then ranked, with the decision's note) or disqualify it (listed apart with the reason). Each
decision is one file in the result's ``review/`` folder, written once and never replaced, so the
history stays; the latest decision that holds counts. A decision holds when its Ed25519 signature
verifies (with the organiser's public key, when one is given; else with the key it carries, which
must then be the key that signed the result, if the result is signed) and when it is bound to this
result's sealed sha256: a decision copied beside another result, or left beside a rescored one,
binds to a different document and is ignored, with the reason shown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from evaluator.errors import ResultError
from evaluator.fileio import temp_beside
from evaluator.report.integrity import seal_holds
from evaluator.report.reader import read_review
from evaluator.report.result import Result
from evaluator.report.review_record import REVIEW_FOLDER, REVIEW_NAME, ReviewDecision
from evaluator.report.signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    bytes_signature_problem,
    fingerprint,
    public_from_raw,
    raw_public,
    sign_bytes,
)
from evaluator.typedjson import to_json

REVIEW_CONTEXT = b"edl-review-decision-v1\n"  # a decision's signature can never pass for a result's
Verdict = Literal["clear", "disqualify"]


@dataclass(frozen=True)
class Standing:
    """One decision file as a board reads it: the decision, and why it is ignored ("" when it holds)."""

    file: str
    decision: ReviewDecision | None
    problem: str = ""

    @property
    def holds(self) -> bool:
        return self.decision is not None and not self.problem

    def line(self) -> str:
        """The decision in one line, for the board's history and for verify."""
        if self.decision is None:
            return f"{self.file}: ignored ({self.problem})"
        said = f"{self.decision.decided_utc[:10]} {self.decision.decision}: {self.decision.why}"
        return said if self.holds else f"{said} [ignored: {self.problem}]"


def _body(decision: ReviewDecision) -> bytes:
    """The bytes a decision's signature covers: the decision without its signature, canonical JSON."""
    document = to_json(replace(decision, signature=None))
    assert isinstance(document, dict)
    document.pop("signature", None)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _write_once(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, and never over an existing file (a hard link refuses to replace)."""
    descriptor, temp = temp_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    finally:
        os.unlink(temp)


def record(result_dir: Path, result: Result, verdict: Verdict, why: str, key: Ed25519PrivateKey) -> Path:
    """Sign and write one decision on ``result`` (read from ``result_dir``); returns the new file."""
    if not why.strip():
        raise ResultError("--why is empty: say why the result is cleared or disqualified; the board shows it")
    if result.integrity is None or not seal_holds(result):
        raise ResultError(f"{result_dir}: its checksum does not match (edited after it was written): a decision "
                          "would bind to a document that cannot be trusted; rescore the submission")
    if verdict == "clear" and not result.suspect:
        raise ResultError(f"{result_dir}: the audit did not find it suspect: there is nothing to clear "
                          "(--disqualify still applies)")
    unsigned = ReviewDecision(decision=verdict, why=why.strip(), bound_to_sha256=result.integrity.sha256,
                              submission=result.model.name,
                              decided_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
                              signer_key=raw_public(key.public_key()))
    decision = replace(unsigned, signature=sign_bytes(_body(unsigned), key, REVIEW_CONTEXT))
    folder = Path(result_dir) / REVIEW_FOLDER
    folder.mkdir(exist_ok=True)
    stamp = decision.decided_utc.replace(":", "").replace("+0000", "Z")  # 2026-12-01T103000.123456Z
    for attempt in range(100):  # two decisions in one second: the next free name, never an overwrite
        path = folder / REVIEW_NAME.format(stamp + (f"-{attempt}" if attempt else ""))
        try:
            _write_once(path, (json.dumps(to_json(decision), indent=2) + "\n").encode())
            return path
        except FileExistsError:
            continue
    raise ResultError(f"{folder}: no free name for another decision this second; try again")


def _problem(decision: ReviewDecision, result: Result, organiser: Ed25519PublicKey | None) -> str:
    """Why ``decision`` does not count for ``result`` ("" when it does)."""
    if result.integrity is None or decision.bound_to_sha256 != result.integrity.sha256:
        return (f"bound to another result (sha256 {decision.bound_to_sha256[:16]}…, this one is "
                f"{result.integrity.sha256[:16] if result.integrity else 'unsealed'}…)")
    carried = public_from_raw(decision.signer_key)
    if carried is None:
        return "its signer_key is not an Ed25519 public key"
    key = organiser or carried
    if organiser is not None and fingerprint(carried) != fingerprint(organiser):
        return f"signed by another key ({fingerprint(carried)[:16]}…), not the organiser's"
    signer = result.signature.public_key_sha256 if result.signature is not None else None
    if organiser is None and signer is not None and fingerprint(carried) != signer:
        return "signed by a key other than the one that signed the result"
    return bytes_signature_problem(_body(decision), decision.signature, key, REVIEW_CONTEXT, "decision")


def read_decisions(result_dir: Path, result: Result, organiser: Ed25519PublicKey | None = None) -> list[Standing]:
    """Every decision file beside ``result``, oldest first, each with why it is ignored ("" when it holds)."""
    folder = Path(result_dir) / REVIEW_FOLDER
    standings = []
    for path in sorted(folder.glob(REVIEW_NAME.format("*"))) if folder.is_dir() else []:
        try:
            decision = read_review(path)
        except ResultError as exc:
            standings.append(Standing(path.name, None, str(exc)))
            continue
        standings.append(Standing(path.name, decision, _problem(decision, result, organiser)))
    return sorted(standings, key=lambda s: (s.decision.decided_utc if s.decision else "", s.file))


def latest(standings: list[Standing]) -> ReviewDecision | None:
    """The decision that counts: the latest one that holds."""
    held = [s.decision for s in standings if s.holds and s.decision is not None]
    return held[-1] if held else None
