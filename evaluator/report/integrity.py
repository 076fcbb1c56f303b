"""The seal on a result: a digest of its canonical JSON, so any edit after writing shows.

A seal proves a document is unchanged since it was sealed, not who sealed it: anyone can
recompute a SHA-256. Only a signature (``evaluator.report.signing``) says who wrote a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from evaluator.report.result import Integrity, Result, result_json

SEAL_ALGORITHM = "sha256 of the canonical JSON (sorted keys, no spaces) without integrity and signature"
UNSEALED_FIELDS = ("integrity", "signature")


def canonical_bytes(result: Result) -> bytes:
    """The bytes a seal and a signature cover: the document without its seal and signature."""
    body = {key: value for key, value in result_json(result).items() if key not in UNSEALED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def digest(result: Result) -> str:
    return hashlib.sha256(canonical_bytes(result)).hexdigest()


def seal(result: Result) -> Result:
    """``result`` with its integrity field set to its own digest."""
    return dataclasses.replace(result, integrity=Integrity(SEAL_ALGORITHM, digest(result)))


def seal_holds(result: Result) -> bool:
    return result.integrity is not None and result.integrity.sha256 == digest(result)
