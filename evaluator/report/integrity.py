"""The seal on a result: a digest of its canonical JSON, so any edit after writing shows.

A seal proves a document is unchanged since it was sealed, not who sealed it: anyone can
recompute a SHA-256. Only a signature (``evaluator.report.signing``) says who wrote a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

from evaluator.report.result import Integrity, Result, result_json

SEAL_ALGORITHM = "sha256 of the canonical JSON (sorted keys, no spaces) without integrity and signature"
UNSEALED_FIELDS = ("integrity", "signature")
WRITTEN_BODY = "_written_body"  # an upgraded older document's own canonical bytes, kept beside its fields


def _canonical(document: Mapping[str, object]) -> bytes:
    body = {key: value for key, value in document.items() if key not in UNSEALED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def canonical_bytes(result: Result) -> bytes:
    """The bytes a seal and a signature cover: the document without its seal and signature, as it was written
    (an older schema's document read into today's type keeps its own bytes: see ``keep_written_form``)."""
    written = result.__dict__.get(WRITTEN_BODY)
    return written if isinstance(written, bytes) else _canonical(result_json(result))


def keep_written_form(result: Result, document: Mapping[str, object]) -> Result:
    """``result``, upgraded from the older ``document``, still covered by the bytes it was sealed and signed as:
    its seal, its signature and the review decisions bound to its digest hold exactly when they held before.

    Any change (``dataclasses.replace``) makes a new document, which drops these bytes and must be sealed anew."""
    result.__dict__[WRITTEN_BODY] = _canonical(document)
    return result


def digest(result: Result) -> str:
    return hashlib.sha256(canonical_bytes(result)).hexdigest()


def seal(result: Result) -> Result:
    """``result`` with its integrity field set to its own digest (in today's form: sealing makes a new document)."""
    fresh = dataclasses.replace(result)  # without the bytes an upgraded older document was written as
    return dataclasses.replace(fresh, integrity=Integrity(SEAL_ALGORITHM, digest(fresh)))


def seal_holds(result: Result) -> bool:
    return result.integrity is not None and result.integrity.sha256 == digest(result)
