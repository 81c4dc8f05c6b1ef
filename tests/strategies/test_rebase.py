"""rebase_text: a proposal's edit carried over to a newer parent when the edits touch
different lines, refused when they overlap."""

from __future__ import annotations

from gepetto.strategies.rebase import rebase_text

BASE = "Answer the question.\nFact: a=1.\nFact: c=3."


def test_edits_of_different_lines_are_both_kept() -> None:
    ours = "Answer the question.\nFact: a=1.\nFact: b=2.\nFact: c=3."  # the successor
    theirs = "Answer the question.\nFact: a=9.\nFact: c=3.\nFact: d=4."  # the proposal
    assert rebase_text(BASE, ours, theirs) == (
        "Answer the question.\nFact: a=9.\nFact: b=2.\nFact: c=3.\nFact: d=4."
    )


def test_insertions_at_one_place_keep_the_successors_first_and_shared_lines_once() -> None:
    ours = BASE + "\nFact: d=4."
    assert rebase_text(BASE, ours, BASE + "\nFact: e=5.") == ours + "\nFact: e=5."
    assert rebase_text(BASE, ours, BASE + "\nFact: d=4.\nFact: e=5.") == ours + "\nFact: e=5."


def test_overlapping_edits_and_rewrites_are_not_rebased() -> None:
    ours = "Answer the question.\nFact: a=2.\nFact: c=3."
    assert rebase_text(BASE, ours, "Answer the question.\nFact: a=3.\nFact: c=3.") is None
    assert rebase_text(BASE, ours, "Something else entirely.") is None
    # An insertion inside a block the other side replaced.
    block = "Answer the question.\nFact: x=0.\nFact: y=0."
    assert rebase_text(BASE, block, "Answer the question.\nFact: a=1.\nNew.\nFact: c=3.") is None


def test_a_proposal_that_removes_lines_is_not_rebased() -> None:
    ours = BASE + "\nFact: d=4."
    assert rebase_text(BASE, ours, "Answer the question.\nFact: c=3.") is None
    assert rebase_text(BASE, ours, "Answer the question.\nFact: c=3.\nFact: e=5.") is None


def test_no_edit_on_either_side() -> None:
    assert rebase_text(BASE, BASE, BASE) == BASE
    assert rebase_text(BASE, BASE, BASE + "\nx") == BASE + "\nx"
    assert rebase_text(BASE, BASE + "\ny", BASE) == BASE + "\ny"
