"""Rebasing a proposal onto a newer parent: a line-based three-way merge of texts.

With several proposals in flight, a proposal's parent may be superseded while its reflection
runs: a sibling's child, admitted meanwhile, dominates it. The reflection's edit (parent ->
proposed text) was made for the old parent; :func:`rebase_text` applies the same edit to the
successor's text, when the two edits touch different lines:

- the lines the proposal changed (replaced or deleted) must not overlap the lines the
  successor changed, else the edits conflict and there is no rebased text (``None``);
- insertions at the same place are both kept, the successor's first (two proposals that
  each add a rule add both); a line inserted by both is kept once;
- a proposal that removes lines (without putting others in their place) is not rebased: a
  removal decided on the old parent is the edit most likely to undo what the successor
  gained, and the minibatch that judges the rebased child rarely shows it (measured in
  bench/time_to_quality.py's *regressions* workload).

A proposal that rewrites the whole text conflicts with any other edit, so it is never
rebased: only the additive, local edits that a rebase cannot get wrong are.

Example:
    >>> base = "Answer.\\nRule A."
    >>> rebase_text(base, ours=base + "\\nRule B.", theirs=base + "\\nRule C.")
    'Answer.\\nRule A.\\nRule B.\\nRule C.'
    >>> rebase_text(base, ours="Answer.\\nRule A!", theirs="Answer.\\nRule A?") is None
    True
"""

from __future__ import annotations

from difflib import SequenceMatcher

__all__ = ["rebase_text"]

_Edit = tuple[int, int, list[str]]  # base lines [start, end) replaced by these lines


def _edits(base: list[str], other: list[str]) -> list[_Edit]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [
        (i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    ]


def rebase_text(base: str, ours: str, theirs: str) -> str | None:
    """``theirs`` (an edit of ``base``) applied to ``ours`` (another edit of ``base``), or
    ``None`` when the two edits change overlapping lines."""
    if theirs in (base, ours):
        return ours
    base_lines = base.split("\n")
    ours_edits = _edits(base_lines, ours.split("\n"))
    theirs_edits = _edits(base_lines, theirs.split("\n"))
    if any(start != end and not lines for start, end, lines in theirs_edits):
        return None  # the proposal removes lines
    for t_start, t_end, _ in theirs_edits:
        for o_start, o_end, _ in ours_edits:
            inserts = t_start == t_end or o_start == o_end
            if not inserts and t_start < o_end and o_start < t_end:
                return None  # both changed the same lines
            if inserts and not (t_start == t_end and o_start == o_end):
                # An insertion inside (not at the edge of) a range the other one changed.
                point, (start, end) = (
                    (t_start, (o_start, o_end)) if t_start == t_end else (o_start, (t_start, t_end))
                )
                if start < point < end:
                    return None
    merged: list[str] = []
    position = 0
    inserted_here: tuple[int, list[str]] = (-1, [])  # the last insertion: place and lines
    events = sorted(
        [(start, end, lines, 0) for start, end, lines in ours_edits]
        + [(start, end, lines, 1) for start, end, lines in theirs_edits],
        key=lambda edit: (edit[0], edit[1] != edit[0], edit[3]),
    )
    for start, end, lines, _ in events:
        merged.extend(base_lines[position:start])
        position = max(position, start)
        if start == end:  # an insertion: lines the other side inserted here are kept once
            known = inserted_here[1] if inserted_here[0] == start else []
            merged.extend(line for line in lines if line not in known)
            inserted_here = (start, [*known, *lines])
        else:
            merged.extend(lines)
        position = max(position, end)
    merged.extend(base_lines[position:])
    return "\n".join(merged)
