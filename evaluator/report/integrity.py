"""The seal on a result: a digest of its canonical JSON, so any edit after writing shows.

A seal proves a document is unchanged since it was sealed, not who sealed it: anyone can
recompute a SHA-256. Only a signature (``evaluator.report.signing``) says who wrote a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from evaluator.report.records import Integrity
from evaluator.report.result import Result, result_json
from evaluator.typedjson import JsonObject

SEAL_ALGORITHM = "sha256 of the canonical JSON (sorted keys, no spaces) without integrity and signature"
UNSEALED_FIELDS = ("integrity", "signature")


def canonical_bytes(result: Result) -> bytes:
    """The bytes a seal and a signature cover: the document without its seal and signature.

    A result upgraded from an older schema, unchanged since, is covered by the older document's bytes."""
    document = result_json(result)
    origin = result.upgraded_from
    if origin is not None and document == origin.upgraded:
        return origin.canonical
    return canonical_json(document)


def canonical_json(document: JsonObject) -> bytes:
    """Sorted keys, no spaces, without the seal and the signature."""
    body = {key: value for key, value in document.items() if key not in UNSEALED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def digest(result: Result) -> str:
    return hashlib.sha256(canonical_bytes(result)).hexdigest()


def seal(result: Result) -> Result:
    """``result`` with its integrity field set to its own digest (of today's form: that is what is written)."""
    return dataclasses.replace(result, integrity=Integrity(SEAL_ALGORITHM, digest(todays_form(result))))


def todays_form(result: Result) -> Result:
    """``result`` as a new document (an upgraded result's older bytes no longer cover it)."""
    return dataclasses.replace(result)


def seal_holds(result: Result) -> bool:
    return result.integrity is not None and result.integrity.sha256 == digest(result)
