"""Free checks on a proposed text, before any metric call is paid for it.

Small reflection models fail in recognisable ways: they throw away most of the text they were
asked to improve, or they paste the examples they were shown into the instructions (which
teaches the task model nothing general and overfits the minibatch), sometimes with the outputs
and feedback the reflection showed (``Generated Outputs: billing`` / ``Feedback: Correct``).
:func:`check_proposal` spots these with string operations only. The proposer *flags* what it
finds (the flag is journaled with the reflection and shown in events and logs); with
``proposal_guards="reject"`` a flagged text is discarded as a failed proposal, so no
evaluation is spent on it.

A third failure is repaired rather than flagged: asked for example lines
(``"input" -> answer``), a small model sometimes pairs a shown input with the very answer the
assistant gave and the feedback marked wrong. :func:`drop_wrong_examples` removes such lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from gepetto.errors import ConfigError

__all__ = [
    "GuardMode",
    "check_proposal",
    "drop_wrong_examples",
    "pasted_records",
    "resolve_guard_mode",
]

GuardMode: TypeAlias = Literal["off", "flag", "reject"]
GUARD_MODES: tuple[GuardMode, ...] = ("off", "flag", "reject")

MIN_PARENT_WORDS = 30
"""Below this many distinct words a parent is short enough to be rewritten from scratch."""
MIN_KEPT_FRACTION = 0.25
"""A child that keeps fewer of the parent's distinct words than this drops most of it."""
COPIED_WORDS = 6
"""This many consecutive words of an example in the child (not in the parent) is a copy."""

_WORD = re.compile(r"[a-z0-9][a-z0-9'_-]{2,}")
_TOKEN = re.compile(r"[a-z0-9#$%@'_-]+")


def resolve_guard_mode(value: object) -> GuardMode:
    """Check the ``proposal_guards`` option.

    Raises:
        ConfigError: for anything but ``"off"``, ``"flag"`` or ``"reject"``.
    """
    for mode in GUARD_MODES:
        if value == mode:
            return mode
    raise ConfigError(
        f"proposal_guards={value!r}: use 'flag' (record suspicious proposals), 'reject' "
        "(discard them before evaluation) or 'off'"
    )


def check_proposal(
    parent_text: str, child_text: str, records: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why ``child_text`` looks like a broken rewrite of ``parent_text``, or ``None``.

    - *Drops most of the parent*: the parent has at least :data:`MIN_PARENT_WORDS` distinct
      words and the child keeps fewer than :data:`MIN_KEPT_FRACTION` of them.
    - *Copies an example*: :data:`COPIED_WORDS` consecutive words of an example's inputs or
      outputs appear in the child but not in the parent (case and punctuation ignored).
      Feedback fields are exempt: restating a rule the feedback gives is the point.
    - *Pastes the examples with their outputs and feedback*: see :func:`pasted_records`
      (checked first: it is the more specific finding).
    """
    pasted = pasted_records(parent_text, child_text, records)
    if pasted is not None:
        return pasted
    parent_words = set(_WORD.findall(parent_text.lower()))
    if len(parent_words) >= MIN_PARENT_WORDS:
        kept = len(parent_words & set(_WORD.findall(child_text.lower()))) / len(parent_words)
        if kept < MIN_KEPT_FRACTION:
            return f"drops most of the parent's text (keeps {kept:.0%} of its words)"
    fresh = _shingles(child_text) - _shingles(parent_text)
    for record in records:
        for line in _example_lines(record):
            if _shingles(line) & fresh:
                return f"copies example text verbatim ({line.strip()[:60]!r})"
    return None


def _example_lines(record: Mapping[str, Any]) -> Iterator[str]:
    for key, value in record.items():
        if "feedback" not in str(key).lower():
            yield from _lines(value)


def _lines(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _lines(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _lines(item)
    elif value is not None:
        yield from str(value).splitlines()


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _TOKEN.findall(text.lower())
    return {tuple(words[i : i + COPIED_WORDS]) for i in range(len(words) - COPIED_WORDS + 1)}


def pasted_records(
    parent_text: str, child_text: str, records: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why ``child_text`` looks like the examples pasted with their outputs and feedback, or
    ``None``.

    The labels are the records' keys after the first (the inputs), usually ``Generated
    Outputs`` and ``Feedback``. The child pastes the records when it has lines labelled with
    at least two of them (one when the records have only one), ``Label:`` at a line's start
    after bullets or markdown, a plural ``s`` optional, that the parent has no line labelled
    with. Inputs-only labels (``Input:``) are ordinary example syntax and never count.

    Example:
        >>> records = [{"Inputs": "x", "Generated Outputs": "y", "Feedback": "Correct"}]
        >>> child = "Input: x\\nGenerated Output: y\\nFeedback: Correct"
        >>> pasted_records("Answer.", child, records).startswith("pastes the examples")
        True
    """
    keys = {str(key) for record in records for key in list(record)[1:]}
    if not keys:
        return None
    pasted = sorted(
        key
        for key in keys
        if _labelled(key).search(child_text) and not _labelled(key).search(parent_text)
    )
    if len(pasted) < min(2, len(keys)):
        return None
    labels = ", ".join(f"'{key}:'" for key in pasted)
    return f"pastes the examples with their outputs and feedback ({labels} lines)"


def _labelled(key: str) -> re.Pattern[str]:
    """A line that starts with ``key:`` (after bullets, numbers or markdown; plural ``s``
    optional)."""
    stem = re.escape(key[:-1] if key.lower().endswith("s") else key)
    return re.compile(rf"^[\s>*#_\-•\d.)]*{stem}s?[*_\s]*:", re.IGNORECASE | re.MULTILINE)


_ARROW = re.compile(r"^(?P<input>.*?\S)\s*(?:->|→|=>)\s*(?P<answer>\S.*)$")
_LINE_PREFIX = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(?:input\s*:)?\s*", re.IGNORECASE)
MIN_EXAMPLE_WORDS = 3
"""An example line's input needs this many words to be matched to a shown input."""


def drop_wrong_examples(
    parent_text: str,
    child_text: str,
    records: Sequence[Mapping[str, Any]],
    failed: Sequence[bool],
) -> tuple[str, list[str]]:
    """``child_text`` without the example lines that teach an answer marked wrong, and those
    lines.

    An example line is ``input -> answer`` (also ``=>`` or ``→``; quotes, a bullet, an
    ``Input:`` prefix and a trailing ``...`` ignored). It is dropped when it is not a line of
    ``parent_text``, its input is (a part of, at least :data:`MIN_EXAMPLE_WORDS` words) the
    ``Inputs`` of a record with ``failed`` true, and its answer is that record's ``Generated
    Outputs`` (case and punctuation ignored). ``failed`` is aligned with ``records``; records
    without those two fields are never matched. A child that would be left empty is returned
    whole.
    """
    wrong = [
        (_words(record["Inputs"]), _words(record["Generated Outputs"]))
        for record, bad in zip(records, failed, strict=False)
        if bad and "Inputs" in record and "Generated Outputs" in record
    ]
    if not wrong:
        return child_text, []
    parent_lines = {line.strip() for line in parent_text.splitlines()}
    kept: list[str] = []
    dropped: list[str] = []
    for line in child_text.splitlines():
        match = _ARROW.match(_LINE_PREFIX.sub("", line, count=1))
        if match is None or line.strip() in parent_lines:
            kept.append(line)
            continue
        example = _words(match["input"])
        answer = _words(match["answer"])
        teaches_wrong = len(example.split()) >= MIN_EXAMPLE_WORDS and any(
            answer == output and f" {example} " in f" {shown} " for shown, output in wrong
        )
        (dropped if teaches_wrong else kept).append(line)
    if not dropped or not "".join(kept).strip():
        return child_text, []
    return "\n".join(kept), dropped


def _words(value: Any) -> str:
    """The lowercase words of a value (nested values joined), space-separated."""
    return " ".join(_TOKEN.findall(" ".join(_lines(value)).lower()))
