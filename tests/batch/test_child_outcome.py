"""The one outcome of a scoring child: written by the child, read back by its parent, never mistaken for success."""

from __future__ import annotations

import pytest

from evaluator.batch.child import OUTCOME_NAME, ChildOutcome, read_outcome, write_outcome


def test_an_outcome_reads_back_as_the_child_wrote_it(tmp_path):
    write_outcome(tmp_path, ChildOutcome(None))
    assert read_outcome(tmp_path) == ChildOutcome(None) and read_outcome(tmp_path).ok
    write_outcome(tmp_path, ChildOutcome("tensor 'x': wrong shape"))
    failed = read_outcome(tmp_path)
    assert failed is not None and not failed.ok and failed.failure == "tensor 'x': wrong shape"
    assert not ChildOutcome("").ok  # a failure with no words is still a failure


@pytest.mark.parametrize("text", ["{}", '{"ok": true, "reason": ""}', '{"failure": null', "[]", ""])
def test_an_unreadable_or_foreign_outcome_is_none_never_a_success(tmp_path, text):
    (tmp_path / OUTCOME_NAME).write_text(text)
    assert read_outcome(tmp_path) is None


def test_no_outcome_file_is_none(tmp_path):
    assert read_outcome(tmp_path) is None
