"""The one reader of result documents: today's schema, and schema 1 upgraded (see ``legacy``)."""

from __future__ import annotations

import json
from pathlib import Path

from evaluator.errors import ResultError
from evaluator.report.legacy import LEGACY_VERSION, V2, upgrade, upgrade_v2
from evaluator.report.result import RESULT_KIND, RESULT_NAME, SCHEMA_VERSION, Result, identify
from evaluator.typedjson import TypedJsonError, from_json


def parse_result(document: object, where: str) -> Result:
    """A ``Result`` from parsed JSON; a foreign or outdated document is a ResultError saying what to do."""
    kind, version = identify(document)
    if not isinstance(document, dict) or kind != RESULT_KIND:
        raise ResultError(f"{where}: not an edl result document")
    if version not in (SCHEMA_VERSION, V2, LEGACY_VERSION):
        raise ResultError(f"{where}: result schema {version} is not one this edl reads ({LEGACY_VERSION}, {V2}, "
                          f"{SCHEMA_VERSION}); rescore the submission with this version (edl score-dir --force)")
    try:
        if version == LEGACY_VERSION:
            return upgrade(document, "result")
        if version == V2:
            return upgrade_v2(document, "result")
        return from_json(Result, document, "result")
    except (TypedJsonError, KeyError, StopIteration, TypeError) as exc:
        raise ResultError(f"{where}: malformed result ({type(exc).__name__}: {exc}); rescore the submission") from None


def read_result(path: Path) -> Result:
    """Read a result written by ``write_result`` (or the result.json inside a result folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_NAME
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"{path}: not a readable JSON result ({exc})") from None
    return parse_result(document, str(path))
