"""Shop orders: a small tool-using task for :class:`~gepetto.adapters.agent.AgentAdapter`.

"How much do 4 peaches cost?" The agent must look the unit price up (it cannot guess it)
with :func:`lookup_price`, multiply it by the quantity with :func:`multiply`, and give the
total. With the tools' docstrings alone the local 0.5B model often keeps multiplying and
never answers; the feedback of a wrong answer says what the right steps were. The examples
are generated with a fixed seed::

    train, val, test = shop_orders(8, seed=1), shop_orders(8, seed=2), shop_orders(12, seed=3)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PRICES",
    "SHOP_HANDWRITTEN_PROMPT",
    "SHOP_MULTIPLY_DESCRIPTION",
    "SHOP_SEED_PROMPT",
    "lookup_price",
    "multiply",
    "shop_metric",
    "shop_orders",
    "shop_scripted_reflection",
]

PRICES = {
    "apple": 0.45,
    "pear": 0.8,
    "melon": 3.25,
    "lemon": 0.35,
    "peach": 1.15,
    "cherry": 0.12,
    "mango": 1.9,
    "plum": 0.55,
}
PLURALS = {"peach": "peaches", "cherry": "cherries", "mango": "mangoes"}

SHOP_SEED_PROMPT = "Answer the customer's question."
SHOP_HANDWRITTEN_PROMPT = (
    "Never guess a price. Step 1: call lookup_price with the item. Step 2: call multiply with "
    "a = the unit price it returned and b = the number of items. Step 3: call final_answer "
    "with the number multiply returned."
)
SHOP_MULTIPLY_DESCRIPTION = (
    "The total price: the unit price times the quantity. Its result is the final answer: pass "
    "it to final_answer at once."
)
"""A better description of :func:`multiply` (the seed is its docstring): with it the local
0.5B model stops multiplying again and again (7/8 right against 4/8 with the docstring)."""


def lookup_price(item: str) -> float:
    """The unit price of an item, in dollars.

    Args:
        item: the item's name.
    """
    name = item.strip().lower()
    singular = {plural: single for single, plural in PLURALS.items()}.get(name, name)
    if singular not in PRICES and singular.endswith("s"):
        singular = singular[:-1]
    if singular not in PRICES:
        raise KeyError(f"unknown item {item!r}; the items are {', '.join(sorted(PRICES))}")
    return PRICES[singular]


def multiply(a: float, b: float) -> float:
    """The product of two numbers."""
    return round(a * b, 4)


def shop_orders(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` questions ``{"input", "answer", "item", "quantity"}`` (fixed by ``seed``)."""
    rng = random.Random(f"shop/{seed}")
    items = sorted(PRICES)
    examples = []
    for _ in range(count):
        item, quantity = rng.choice(items), rng.randint(2, 9)
        plural = PLURALS.get(item, item + "s")
        question = rng.choice(
            [
                "How much do {n} {p} cost?",
                "What is the price of {n} {p}?",
                "I want {n} {p}. How much?",
            ]
        ).format(n=quantity, p=plural)
        examples.append(
            {
                "input": question,
                "answer": round(quantity * PRICES[item], 2),
                "item": item,
                "quantity": quantity,
            }
        )
    return examples


def shop_metric(
    example: Mapping[str, Any], answer: str, trajectory: Mapping[str, Any]
) -> tuple[float, str]:
    """1 when the last number of the answer is the total, else 0 with what went wrong."""
    numbers = re.findall(r"\d+(?:\.\d+)?", answer.replace(",", ""))
    total = example["answer"]
    if numbers and abs(float(numbers[-1]) - total) < 0.006:
        return 1.0, f"Correct: the total is {total}."
    calls = trajectory.get("tool_calls", [])
    tools = [c.get("tool") for c in calls]
    hints = []
    if "lookup_price" not in tools:
        hints.append("the price was not looked up (lookup_price), so it was guessed")
    if any(c.get("tool") == "lookup_price" and "error" in c for c in calls):
        hints.append(f"lookup_price failed: the item is '{example['item']}'")
    if "multiply" not in tools:
        hints.append("the unit price was not multiplied by the quantity (multiply)")
    why = "; ".join(hints) or "the final answer is not the product that multiply returned"
    return 0.0, (
        f"Incorrect: expected {total} ({example['quantity']} x {PRICES[example['item']]}, the "
        f"unit price of '{example['item']}'), but the answer was {answer[:120]!r}: {why}."
    )


def shop_scripted_reflection(prompt: Any) -> str:
    """A stand-in reflection model for the shop task (tests and examples).

    Given a reflection prompt, it proposes :data:`SHOP_MULTIPLY_DESCRIPTION` for the
    ``multiply`` tool, a unit-price description for ``lookup_price``, and keeps the seed
    system prompt: the fix the local 1.5B model does not find reliably in a small budget.
    """
    text = json.dumps(prompt)
    if "The product of two numbers." in text:
        return f"```\n{SHOP_MULTIPLY_DESCRIPTION}\n```"
    if "The unit price of an item" in text:
        return "```\nThe unit price of an item, in dollars.\n```"
    return f"```\n{SHOP_SEED_PROMPT}\n```"
