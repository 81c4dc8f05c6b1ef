"""A shop-arithmetic agent task and a scripted tool-calling model for the agent tests."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

PRICES = {"apple": 0.5, "pear": 0.75, "melon": 3.0, "lemon": 0.25}


def lookup_price(item: str) -> float:
    """The unit price of an item.

    Args:
        item: the item's name, singular.
    """
    if item not in PRICES:
        raise KeyError(f"no item named {item!r}")
    return PRICES[item]


async def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    await asyncio.sleep(0)
    return a * b


def shop_examples(pairs: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [
        {"input": f"How much do {n} {item}s cost?", "answer": round(n * PRICES[item], 2)}
        for n, item in pairs
    ]


def shop_metric(example: dict[str, Any], answer: str, trajectory: Any) -> tuple[float, str]:
    numbers = re.findall(r"-?\d+(?:\.\d+)?", answer)
    if numbers and abs(float(numbers[-1]) - example["answer"]) < 1e-6:
        return 1.0, "Correct."
    used = sorted({c["tool"] for c in trajectory["tool_calls"]})
    partial = 0.5 if "lookup_price" in used else 0.0  # half right: the price was looked up
    return partial, (
        f"Incorrect: expected {example['answer']}, got {answer!r}. Tools used: {used or 'none'}."
        " The total is the unit price from lookup_price times the quantity, from multiply."
    )


def scripted_agent(messages: list[dict[str, str]]) -> str:
    """A deterministic "model" that follows its system prompt literally.

    It looks the price up only if the system prompt says "look up"; it multiplies only if
    multiply's description mentions the "total"; otherwise it answers what it has.
    """
    system, last = messages[0]["content"], messages[-1]["content"]
    question = messages[1]["content"]
    match = re.search(r"(\d+) (\w+)s", question)
    if match is None or "boom" in question:
        raise RuntimeError("the model crashed")
    count, item = int(match.group(1)), match.group(2)
    multiply_line = next(line for line in system.splitlines() if line.startswith("- multiply"))
    if len(messages) == 2:
        if "look up" not in system.lower():
            return "About 1 dollar."
        return _call("lookup_price", {"item": item})
    result = re.match(r"(\w+)\(.*\) returned: (\S+)", last)
    if result and result.group(1) == "lookup_price":
        price = float(result.group(2))
        if "total" not in multiply_line:
            return f"{price}"
        return _call("multiply", {"a": price, "b": count})
    if result and result.group(1) == "multiply":
        if count % 2:
            return f"The total is {float(result.group(2))}."
        return _call("final_answer", {"answer": float(result.group(2))})
    return f"I could not do it: {last.splitlines()[0]}"


def _call(tool: str, arguments: dict[str, Any]) -> str:
    return "```json\n" + json.dumps({"tool": tool, "arguments": arguments}) + "\n```"
