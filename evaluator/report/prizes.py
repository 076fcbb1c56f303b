"""What a board that decides prizes requires beyond any board: a check on images no team has seen.

The secret flips and shifts catch a graph that stores the test set, but not a network trained on
it: only images drawn anew (``--private-data``, e.g. CIFAR-10.1) can. So a prize board (one given
the organiser's ``--public-key``) ranks only results that were checked on such images and lists the
rest apart, unless the organiser explicitly allows it (``--allow-unchecked-unseen``).
"""

from __future__ import annotations

from evaluator.report.result import Result

UNCHECKED_UNSEEN = "unseen not checked"
UNCHECKED_UNSEEN_NOTE = ("generalization not checked on unseen images: not ranked for prizes; rescore with "
                         "--private-data (e.g. cifar10.1), or pass --allow-unchecked-unseen")


def checked_on_unseen(result: Result) -> bool:
    """The result's audit classified images no team has seen (its verdict is the audit's, judged elsewhere)."""
    return result.audit is not None and result.audit.private is not None


def requires_unseen(public_key_given: bool, allow_unchecked_unseen: bool) -> bool:
    """A board decides prizes when it is given the organiser's key; then it requires the check, unless allowed."""
    return public_key_given and not allow_unchecked_unseen
