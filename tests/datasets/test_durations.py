"""The duration-parsing code task: deterministic disjoint splits that hold every rule, a
hand-written implementation that passes them all and a seed that passes few."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from gepetto.datasets.durations import (
    HANDWRITTEN_CODE,
    INVALID,
    SEED_CODE,
    duration_case_splits,
    duration_cases,
)


def _function(code: str) -> Callable[[str], Any]:
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the project's own code, not a candidate
    return namespace["parse_duration"]  # type: ignore[no-any-return]


def _answer(parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except ValueError:
        return INVALID


def test_splits_are_deterministic_and_disjoint() -> None:
    train, val, test = duration_case_splits(30)
    assert [train, val, test] == duration_case_splits(30)
    inputs = [case["input"] for case in train + val + test]
    assert len(inputs) == 90 and len(set(inputs)) == 90
    assert duration_cases(5, seed=4) == duration_cases(5, seed=4)
    assert duration_cases(5, seed=4) != duration_cases(5, seed=5)


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [
        ("clock", r"^\d+:\d\d(:\d\d)?$"),
        ("decimal", r"\d\.\d"),
        ("several parts", r"\d\s*[A-Za-z]+[ ,]*(and )?\d"),
        ("a unit in capitals", r"[A-Z]"),
        ("bare seconds", r"^\d+$"),
    ],
)
def test_every_split_holds_every_rule(rule: str, pattern: str) -> None:
    for split in duration_case_splits(30):
        assert any(re.search(pattern, case["input"]) for case in split), rule
        assert any(case["answer"] == INVALID for case in split)


def test_the_handwritten_code_passes_every_case_and_the_seed_few() -> None:
    handwritten, seed = _function(HANDWRITTEN_CODE), _function(SEED_CODE)
    for split in duration_case_splits(30):
        assert all(_answer(handwritten, c["input"]) == c["answer"] for c in split)
        passed = sum(_answer(seed, c["input"]) == c["answer"] for c in split)
        assert passed <= 10, "the seed must leave most of the task to the search"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45", 45),
        ("5 Min", 300),
        ("1h30m", 5400),
        ("2 hours, 5 minutes and 3 seconds", 7503),
        ("1.5h", 5400),
        ("1:30", 90),
        ("1:02:03", 3723),
        ("5 parsecs", INVALID),
        ("soon", INVALID),
    ],
)
def test_the_rules_of_the_module_docstring(text: str, seconds: Any) -> None:
    assert _answer(_function(HANDWRITTEN_CODE), text) == seconds
