"""Test cases for a function that reads a human-written duration: an ``optimize_anything`` task
where the candidate is code, not a prompt.

``parse_duration(text)`` must return the seconds a duration denotes, as people write them:

- a bare number is seconds (``"45"``);
- a number with a unit, in any of its spellings and any case, with or without a space
  (``"5m"``, ``"5 Min"``, ``"2 hrs"``, ``"1 day"``);
- several parts joined by spaces, commas or ``and`` (``"1h30m"``,
  ``"2 hours, 5 minutes and 3 seconds"``);
- decimals (``"1.5h"`` is 5400);
- clock notation: ``m:ss`` and ``h:mm:ss`` (``"1:30"`` is 90, ``"1:02:03"`` is 3723);
- anything else raises ``ValueError`` (``"soon"``, ``"5 parsecs"``); the expected answer of
  such a case is the string ``"ValueError"``.

:data:`SEED_CODE` reads a bare number of seconds only; :data:`HANDWRITTEN_CODE` is a careful
implementation of every rule above. Cases are generated from a seed, so no data files are
needed; :func:`duration_case_splits` gives train/val/test with no input in two splits.

Example:
    >>> [case["input"] for case in duration_cases(3, seed=0)]
    ['33 day 32hr', 'n/a', '3:45:51']
    >>> sorted(duration_cases(1, seed=0)[0])
    ['answer', 'input']
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from gepetto.datasets.splits import disjoint_splits, drawing_from

__all__ = [
    "HANDWRITTEN_CODE",
    "INVALID",
    "SEED_CODE",
    "duration_case_splits",
    "duration_cases",
]

INVALID = "ValueError"
"""The expected answer of a case whose text is not a duration."""

SEED_CODE = '''def parse_duration(text):
    """Return the number of seconds the duration in text denotes."""
    return int(text.strip())
'''

HANDWRITTEN_CODE = '''import re

_UNITS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}
_PART = re.compile(r"(\\d+(?:\\.\\d+)?)\\s*([a-z]+)")


def parse_duration(text):
    """Return the number of seconds the duration in text denotes; ValueError if none."""
    text = text.strip().lower()
    if re.fullmatch(r"\\d+", text):
        return int(text)
    if re.fullmatch(r"\\d+(:\\d\\d){1,2}", text):
        seconds = 0
        for field in text.split(":"):
            seconds = seconds * 60 + int(field)
        return seconds
    rest = _PART.sub(" ", text)
    if re.sub(r"[\\s,]|\\band\\b", "", rest) or not _PART.search(text):
        raise ValueError(f"not a duration: {text!r}")
    total = 0.0
    for number, unit in _PART.findall(text):
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        total += float(number) * _UNITS[unit]
    return round(total)
'''

_SPELLINGS = {
    86400: ["d", "day", "days"],
    3600: ["h", "hr", "hrs", "hour", "hours"],
    60: ["m", "min", "mins", "minute", "minutes"],
    1: ["s", "sec", "secs", "second", "seconds"],
}
_NOT_DURATIONS = [
    "soon",
    "later today",
    "a while",
    "forever",
    "n/a",
    "tbd",
    "5 parsecs",
    "3 weeks",
    "12 lightyears",
    "10 moments",
    "2 fortnights",
    "",
]


def _unit(seconds_per_unit: int, rng: random.Random) -> str:
    spelling = rng.choice(_SPELLINGS[seconds_per_unit])
    return (
        spelling.upper()
        if rng.random() < 0.15
        else spelling.title()
        if rng.random() < 0.2
        else spelling
    )


def _part(seconds_per_unit: int, value: int, rng: random.Random) -> str:
    space = " " if rng.random() < 0.5 else ""
    return f"{value}{space}{_unit(seconds_per_unit, rng)}"


def _bare(rng: random.Random) -> tuple[str, Any]:
    value = rng.randint(1, 5000)
    return str(value), value


def _single(rng: random.Random) -> tuple[str, Any]:
    unit = rng.choice(list(_SPELLINGS))
    value = rng.randint(1, 99)
    return _part(unit, value, rng), value * unit


def _compound(rng: random.Random) -> tuple[str, Any]:
    units = sorted(rng.sample(list(_SPELLINGS), rng.choice([2, 2, 3])), reverse=True)
    values = [rng.randint(1, 59) for _ in units]
    parts = [_part(u, v, rng) for u, v in zip(units, values, strict=True)]
    joiner = rng.choice(["space", "none", "comma", "and"])
    if joiner == "none":
        text = "".join(p.replace(" ", "") for p in parts)
    elif joiner == "space":
        text = " ".join(parts)
    elif joiner == "comma":
        text = ", ".join(parts)
    else:
        text = (", ".join(parts[:-1])) + " and " + parts[-1]
    return text, sum(u * v for u, v in zip(units, values, strict=True))


def _decimal(rng: random.Random) -> tuple[str, Any]:
    unit, value = rng.choice([(3600, 0.5), (3600, 1.5), (3600, 2.5), (60, 0.5), (86400, 0.5)])
    value += rng.choice([0, 1, 2, 3])
    text = f"{value:g}{' ' if rng.random() < 0.5 else ''}{_unit(unit, rng)}"
    return text, round(value * unit)


def _clock(rng: random.Random) -> tuple[str, Any]:
    minutes, seconds = rng.randint(0, 59), rng.randint(0, 59)
    if rng.random() < 0.5:
        return f"{minutes}:{seconds:02d}", minutes * 60 + seconds
    hours = rng.randint(1, 12)
    return f"{hours}:{minutes:02d}:{seconds:02d}", hours * 3600 + minutes * 60 + seconds


def _invalid(rng: random.Random) -> tuple[str, Any]:
    return rng.choice(_NOT_DURATIONS), INVALID


# How often each shape is drawn: combinations and units most, the other rules a few times
# in a split of 30, so every rule is in every split.
_SHAPES = (
    [_bare] * 2 + [_single] * 5 + [_compound] * 6 + [_decimal] * 3 + [_clock] * 3 + [_invalid] * 3
)


def duration_cases(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` cases ``{"input": text, "answer": seconds or "ValueError"}`` from generator
    ``seed`` (the same ``n`` and ``seed`` give the same cases; inputs may repeat)."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        text, answer = rng.choice(_SHAPES)(rng)
        cases.append({"input": text, "answer": answer})
    return cases


def duration_case_splits(size: int, seeds: Iterable[int] = (1, 2, 3)) -> list[list[dict[str, Any]]]:
    """One split of ``size`` distinct cases per generator seed (train, val, test), no input in
    two splits."""
    return disjoint_splits(drawing_from(duration_cases), size, seeds)
