"""The review decision: the organiser's signed decision on one result, a document of its own beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from evaluator.report.records import Signature
from evaluator.typedjson import doc

REVIEW_FOLDER = "review"  # beside result.json: the organiser's decisions on it, one file each, never overwritten
REVIEW_NAME = "decision-{}.json"  # by the decision's UTC time stamp
REVIEW_KIND = "edl-review"


@dataclass
class ReviewDecision:
    """The organiser's decision on one result: signed, and bound to that result's sealed sha256."""

    decision: Literal["clear", "disqualify"] = field(metadata=doc(
        "clear: ranked despite the audit, with the note; disqualify: listed apart with the reason"))
    why: str = field(metadata=doc("the organiser's reason, shown on every board"))
    bound_to_sha256: str = field(metadata=doc("the reviewed result's integrity.sha256: the decision counts for "
                                              "that document only"))
    submission: str = field(metadata=doc("the reviewed result's model.name, for a reader"))
    decided_utc: str
    signer_key: str = field(metadata=doc("the signer's raw Ed25519 public key, base64"))
    signature: Signature | None = None
    kind: Literal["edl-review"] = "edl-review"
    version: int = 1


