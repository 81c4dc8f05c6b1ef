"""Structured extraction: read a shipping request and return its fields as JSON.

Each message (an e-mail, a chat line, a form note) names an order number, a customer, a
destination city, a number of parcels and a delivery date, in varying order and wording.
The answer is a JSON object with the keys of :data:`FIELDS`; the score is the share of
fields right (:func:`field_match_evaluator`), and the feedback names each wrong or missing
field with its expected value, so the reflection learns the schema and its conventions:

- ``order_id`` is the number only, as an integer (``#A-4821`` gives ``4821``);
- ``city`` is the destination, not the sender's city;
- ``date`` is ``YYYY-MM-DD``.

Examples are generated from templates with a fixed seed, so no data files are needed::

    train = shipping_requests(30, seed=1)
    val = shipping_requests(30, seed=2)

Example:
    >>> request = shipping_requests(1, seed=0)[0]
    >>> field_match_evaluator()(request, request["answer"])[0]
    1.0
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "FIELDS",
    "HANDWRITTEN_PROMPT",
    "SEED_PROMPT",
    "field_match_evaluator",
    "shipping_requests",
]

FIELDS = ("order_id", "customer", "city", "parcels", "date")

SEED_PROMPT = "Extract the order details from the message."
HANDWRITTEN_PROMPT = """Read the shipping request and return only a JSON object, with no other text:
{"order_id": <integer>, "customer": "<full name>", "city": "<destination city>",
 "parcels": <integer>, "date": "YYYY-MM-DD"}
- order_id: the digits of the order number only (for "#A-4821" write 4821).
- customer: the person the order is for, first and last name.
- city: where the parcels go (the destination), never the city they are sent from.
- parcels: the number of parcels or boxes, as an integer ("three" is 3).
- date: the delivery date, written YYYY-MM-DD."""

_FIRST = ["Dana", "Kofi", "Mirela", "Jonas", "Priya", "Luis", "Hana", "Owen", "Sofia", "Yusuf"]
_LAST = ["Whitfield", "Mensah", "Popescu", "Berg", "Raman", "Ortega", "Sato", "Quinn", "Lind"]
_CITIES = ["Porto", "Lyon", "Gdansk", "Leeds", "Turin", "Graz", "Bergen", "Utrecht", "Malaga"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _request(rng: random.Random) -> dict[str, Any]:
    order = rng.randint(1000, 9999)
    customer = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    city, origin = rng.sample(_CITIES, 2)
    parcels = rng.randint(1, 6)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    date = f"2026-{month:02d}-{day:02d}"
    spoken_date = f"{day} {_MONTHS[month - 1]} 2026"
    parcels_text = _WORDS.get(parcels, str(parcels)) if rng.random() < 0.5 else str(parcels)
    order_text = rng.choice([f"#{order}", f"#A-{order}", f"order no. {order}", f"ref {order}"])
    templates = [
        f"Hi, please ship {order_text} for {customer}: {parcels_text} parcel(s) from our "
        f"{origin} warehouse to {city}, to arrive on {spoken_date}.",
        f"Delivery request {order_text}. Customer: {customer}. Destination: {city} "
        f"(dispatch from {origin}). Parcels: {parcels_text}. Deliver by {date}.",
        f"{customer} is expecting {parcels_text} boxes in {city} on {spoken_date}; they leave "
        f"{origin} tomorrow. Our reference is {order_text}.",
    ]
    answer = {
        "order_id": order,
        "customer": customer,
        "city": city,
        "parcels": parcels,
        "date": date,
    }
    return {
        "input": rng.choice(templates),
        "answer": json.dumps(answer),
        "additional_context": f"The sender's city is {origin}; the destination is {city}.",
    }


def shipping_requests(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` requests ``{"input", "answer" (a JSON string), "additional_context"}``.

    The same ``(n, seed)`` always gives the same requests; ``seed=1``/``2``/``3`` make train,
    validation and test sets.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"shipping-{seed}")
    return [_request(rng) for _ in range(n)]


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def _parse(reply: str) -> dict[str, Any] | None:
    match = _JSON_OBJECT.search(reply)
    if match is None:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, int):
        try:
            return int(str(got).strip().lstrip("#")) == expected
        except ValueError:
            return False
    return str(got).strip().lower() == str(expected).lower()


def field_match_evaluator() -> Callable[[Mapping[str, Any], str], tuple[float, str]]:
    """``(score, feedback)``: the share of :data:`FIELDS` the reply's JSON object gets right.

    The reply's first ``{...}`` is parsed as JSON; a reply without one scores 0. The feedback
    lists every wrong or missing field with the expected value, then the example's
    ``additional_context``.
    """

    def evaluate(example: Mapping[str, Any], reply: str) -> tuple[float, str]:
        expected = json.loads(example["answer"])
        got = _parse(reply)
        if got is None:
            return 0.0, (
                "Incorrect: the reply is not a JSON object. Expected "
                f"{example['answer']}. {example.get('additional_context', '')}"
            )
        wrong = [
            f"{name} should be {json.dumps(expected[name])}"
            + (f" (got {json.dumps(got[name])})" if name in got else " (missing)")
            for name in FIELDS
            if not (name in got and _same(expected[name], got[name]))
        ]
        score = 1 - len(wrong) / len(FIELDS)
        if not wrong:
            return score, "Correct: every field is right."
        return score, (
            f"{len(FIELDS) - len(wrong)} of {len(FIELDS)} fields right. Wrong: "
            f"{'; '.join(wrong)}. {example.get('additional_context', '')}"
        )

    return evaluate
