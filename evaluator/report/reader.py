"""The one reader of edl's documents: results (today's schema, older ones upgraded, see ``legacy``), batch
summaries and review decisions, each into its typed document."""

from __future__ import annotations

import json
from pathlib import Path

from evaluator.errors import ResultError
from evaluator.report.batch_record import BATCH_NAME, BatchSummary
from evaluator.report.legacy import OLDER_VERSIONS, upgrade
from evaluator.report.result import RESULT_KIND, RESULT_NAME, SCHEMA_VERSION, Result, identify
from evaluator.report.review_record import REVIEW_KIND, ReviewDecision
from evaluator.typedjson import TypedJsonError, from_json

READABLE_VERSIONS = (*OLDER_VERSIONS, SCHEMA_VERSION)


def parse_result(document: object, where: str) -> Result:
    """A ``Result`` from parsed JSON; a foreign or outdated document is a ResultError saying what to do."""
    kind, version = identify(document)
    if not isinstance(document, dict) or kind != RESULT_KIND:
        raise ResultError(f"{where}: not an edl result document")
    if version not in READABLE_VERSIONS:
        raise ResultError(f"{where}: result schema {version} is not one this edl reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}); rescore the submission with this version "
                          "(edl score-dir --force)")
    try:
        if version in OLDER_VERSIONS:
            return upgrade(document, "result")
        return from_json(Result, document, "result")
    except (TypedJsonError, KeyError, StopIteration, TypeError) as exc:
        raise ResultError(f"{where}: malformed result ({type(exc).__name__}: {exc}); rescore the submission") from None
    except ResultError as exc:  # an older document that cannot be upgraded, and why
        raise ResultError(f"{where}: {exc}") from None


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


def read_batch(path: Path) -> BatchSummary:
    """Read score-dir's ``batch.json`` (or the one in a results folder); one that cannot be read or does not match
    the batch document is a ResultError: ``PATH: why``."""
    path = Path(path)
    if path.is_dir():
        path = path / BATCH_NAME
    try:
        return from_json(BatchSummary, json.loads(path.read_text()), "batch")
    except (OSError, ValueError, TypedJsonError) as exc:
        raise ResultError(f"{path}: {exc}") from None


def read_review(path: Path) -> ReviewDecision:
    """Read one review decision file; one that is not one is a ResultError saying why (without its path)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"not readable JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("kind") != REVIEW_KIND:
        raise ResultError("not an edl review decision")
    try:
        return from_json(ReviewDecision, document, "decision")
    except TypedJsonError as exc:
        raise ResultError(f"malformed decision ({exc})") from None
