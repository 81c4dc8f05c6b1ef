"""Date normalization: a second small task where the prompt really matters.

Find the date in a short business message and write it as ``YYYY-MM-DD``. About 40% of the
examples are tricky: the obvious reading is wrong, and only a house convention (given in the
feedback of a wrong answer, through ``additional_context``) teaches the right one:

- a numeric date with slashes is day/month/year (``04/07/2025`` is 4 July 2025);
- a date without a year is in 2025;
- ``mid-<month>`` means the 15th of that month.

Score with :func:`gepetto.adapters.exact_match_evaluator` (the answer is a plain string).
Examples are generated from templates with a fixed seed, so no data files are needed::

    train = date_normalization(30, seed=1)
    val = date_normalization(30, seed=2)
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "FORMAT_PROMPT",
    "HANDWRITTEN_PROMPT",
    "RULES",
    "SEED_PROMPT",
    "date_normalization",
]

RULES = {
    "slash-day-first": "A numeric date with slashes is day/month/year (European order): "
    "04/07/2025 is 4 July 2025, so 2025-07-04.",
    "missing-year": "A date written without a year is in 2025.",
    "mid-month": "'mid-<month>' (or 'mid <month>') means the 15th of that month.",
}

SEED_PROMPT = "What date does the message mention?"
FORMAT_PROMPT = "Write the date in the message as YYYY-MM-DD. Answer with only the date."
HANDWRITTEN_PROMPT = """Write the date in the message as YYYY-MM-DD.
Rules:
- Slash dates are DD/MM/YYYY (day first). Rewrite DD/MM/YYYY as YYYY-MM-DD: 04/07/2025 \
becomes 2025-07-04.
- A date without a year is in 2025.
- "mid" before a month means day 15 of that month.
Answer with only the date in YYYY-MM-DD format."""
"""A prompt written by hand with the format and the three conventions.

Measured with the local Qwen2.5-Coder-0.5B (temperature 0, max_tokens 24, exact match) on
30-example sets from generator seeds 1-5: :data:`SEED_PROMPT` 0.00 on every set (it answers
in prose), :data:`FORMAT_PROMPT` 0.53-0.63 (plain dates right, most tricky ones wrong),
:data:`HANDWRITTEN_PROMPT` 0.90-0.97 (the slash dates are its usual misses).
"""

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_YEARS = (2024, 2025, 2026)

_SENTENCES = (
    "The invoice is due on {date}.",
    "Please deliver the parts by {date}.",
    "Can we move the review meeting to {date}?",
    "The payment deadline is {date}.",
    "I will be out of the office until {date}.",
    "Our support contract ends on {date}.",
    "The new price list applies from {date}.",
    "Please book the venue for {date}.",
)


def _plain(rng: random.Random) -> tuple[str, str]:
    year, month, day = rng.choice(_YEARS), rng.randint(1, 12), rng.randint(1, 28)
    name = _MONTHS[month - 1]
    text = rng.choice(
        [
            f"{name} {day}, {year}",
            f"{day} {name} {year}",
            f"{name[:3]} {day}, {year}",
            f"{day} {name[:3]} {year}",
        ]
    )
    return text, f"{year:04d}-{month:02d}-{day:02d}"


def _slash_day_first(rng: random.Random) -> tuple[str, str]:
    # Both numbers <= 12 and different, so the US reading is a valid, wrong date.
    year = rng.choice(_YEARS)
    day, month = rng.sample(range(1, 13), 2)
    return f"{day:02d}/{month:02d}/{year}", f"{year:04d}-{month:02d}-{day:02d}"


def _missing_year(rng: random.Random) -> tuple[str, str]:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    name = _MONTHS[month - 1]
    text = rng.choice([f"{name} {day}", f"{day} {name}"])
    return text, f"2025-{month:02d}-{day:02d}"


def _mid_month(rng: random.Random) -> tuple[str, str]:
    year, month = rng.choice(_YEARS), rng.randint(1, 12)
    name = _MONTHS[month - 1]
    return rng.choice([f"mid-{name} {year}", f"mid {name} {year}"]), f"{year:04d}-{month:02d}-15"


_TRICKY = {
    "slash-day-first": _slash_day_first,
    "missing-year": _missing_year,
    "mid-month": _mid_month,
}


def date_normalization(n: int, seed: int = 0, tricky_fraction: float = 0.4) -> list[dict[str, Any]]:
    """``n`` examples ``{"input", "answer", "additional_context"}``, deterministic in ``seed``.

    ``round(n * tricky_fraction)`` examples are tricky (spread over the three conventions);
    the others state a full date with a month name. Tricky examples carry their convention
    in ``additional_context`` so the evaluator's feedback can teach it; plain ones carry the
    format.
    """
    rng = random.Random(seed)
    tricky_count = round(n * tricky_fraction)
    rules = list(_TRICKY)
    examples: list[dict[str, Any]] = []
    for index in range(n):
        if index < tricky_count:
            rule = rules[index % len(rules)]
            date, answer = _TRICKY[rule](rng)
            context = {"rule": RULES[rule]}
        else:
            date, answer = _plain(rng)
            context = {"format": "YYYY-MM-DD, only the date"}
        examples.append(
            {
                "input": rng.choice(_SENTENCES).format(date=date),
                "answer": answer,
                "additional_context": context,
            }
        )
    rng.shuffle(examples)
    return examples
