"""Arithmetic word problems with a numeric answer: a task where the instructions decide how
the model works, not only how it formats.

Each problem takes two or three steps of whole-number arithmetic (buy, give away, share,
pack). A small model that answers at once is often wrong; told to work step by step and to
end with ``Answer: <number>``, it does much better. Score with :func:`numeric_answer_evaluator`
(the last number of the reply, or the number after ``Answer:``).

Examples are generated from templates with a fixed seed, so no data files are needed::

    train = arithmetic_problems(30, seed=1)
    val = arithmetic_problems(30, seed=2)

Example:
    >>> problem = arithmetic_problems(1, seed=0)[0]
    >>> sorted(problem)
    ['additional_context', 'answer', 'input']
    >>> numeric_answer_evaluator()(problem, f"Answer: {problem['answer']}")[0]
    1.0
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "HANDWRITTEN_PROMPT",
    "SEED_PROMPT",
    "arithmetic_problems",
    "numeric_answer_evaluator",
]

SEED_PROMPT = "Solve the problem."
# Chosen by measurement on the 0.5B task model (200 output tokens, 24 problems of seeds 2
# and 3): this prompt 0.71, the seed 0.54; a longer step-by-step recipe ("one short line per
# step ... keeping track of what is added and taken away") scored 0.54 and, at 160 tokens,
# 0.12: the small model answered at once or ran out of tokens before its answer.
HANDWRITTEN_PROMPT = "Solve the problem. Show your calculation, then end with: Answer: <number>"

_NAMES = ["Maya", "Omar", "Lena", "Ravi", "Ines", "Tom", "Aiko", "Sam", "Nora", "Felix"]
_ITEMS = ["apples", "pens", "stickers", "marbles", "cookies", "cards", "shells", "stamps"]


def _buy_packs(rng: random.Random) -> tuple[str, int, str]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start, packs, per_pack = rng.randint(3, 30), rng.randint(2, 9), rng.randint(3, 12)
    text = (
        f"{name} has {start} {item}. {name} buys {packs} packs with {per_pack} {item} in "
        f"each pack. How many {item} does {name} have now?"
    )
    return text, start + packs * per_pack, f"{start} + {packs} x {per_pack}"


def _give_away(rng: random.Random) -> tuple[str, int, str]:
    name, other, item = *rng.sample(_NAMES, 2), rng.choice(_ITEMS)
    boxes, per_box = rng.randint(2, 8), rng.randint(5, 15)
    given = rng.randint(1, boxes * per_box - 1)
    text = (
        f"{name} has {boxes} boxes of {per_box} {item}. {name} gives {given} {item} to "
        f"{other}. How many {item} does {name} have left?"
    )
    return text, boxes * per_box - given, f"{boxes} x {per_box} - {given}"


def _share(rng: random.Random) -> tuple[str, int, str]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    friends, each = rng.randint(2, 6), rng.randint(3, 10)
    extra = rng.randint(1, friends * each - 1)
    text = (
        f"{name} had some {item}, found {extra} more, and then shared all of them equally "
        f"among {friends} friends, {each} each. How many {item} did {name} have at first?"
    )
    return text, friends * each - extra, f"{friends} x {each} - {extra}"


def _three_steps(rng: random.Random) -> tuple[str, int, str]:
    item = rng.choice(_ITEMS)
    start, bought, per_day, days = (
        rng.randint(10, 40),
        rng.randint(5, 25),
        rng.randint(2, 5),
        rng.randint(2, 6),
    )
    used = per_day * days
    if used > start + bought:
        days = (start + bought) // per_day
        used = per_day * days
    text = (
        f"A shop has {start} {item}. It receives {bought} more, then sells {per_day} "
        f"{item} a day for {days} days. How many {item} are left?"
    )
    return text, start + bought - used, f"{start} + {bought} - {per_day} x {days}"


_TEMPLATES: list[Callable[[random.Random], tuple[str, int, str]]] = [
    _buy_packs,
    _give_away,
    _share,
    _three_steps,
]


def arithmetic_problems(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` problems ``{"input", "answer", "additional_context"}`` (the answer a string).

    The same ``(n, seed)`` always gives the same problems; different seeds give different
    numbers, so ``seed=1``/``2``/``3`` make train, validation and test sets.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"arithmetic-{seed}")
    problems = []
    for index in range(n):
        text, answer, working = _TEMPLATES[index % len(_TEMPLATES)](rng)
        problems.append(
            {
                "input": text,
                "answer": str(answer),
                "additional_context": f"The calculation is {working} = {answer}.",
            }
        )
    return problems


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_LINE = re.compile(r"answer\s*[:=]\s*\**\s*(-?\d[\d,]*(?:\.\d+)?)", re.I)


def _final_number(reply: str) -> float | None:
    labelled = _ANSWER_LINE.findall(reply)
    candidates = labelled or _NUMBER.findall(reply)
    if not candidates:
        return None
    return float(candidates[-1].replace(",", ""))


def numeric_answer_evaluator() -> Callable[[Mapping[str, Any], str], tuple[float, str]]:
    """Score 1 when the reply's answer equals the example's number: ``(score, feedback)``.

    The reply's answer is the number after the last ``Answer:``, or else its last number.
    The feedback says what was expected and found and adds the example's
    ``additional_context`` (the calculation).
    """

    def evaluate(example: Mapping[str, Any], reply: str) -> tuple[float, str]:
        expected = float(example["answer"])
        got = _final_number(reply)
        context = example.get("additional_context", "")
        if got is None:
            return (
                0.0,
                f"Incorrect: the reply has no number; expected {example['answer']}. {context}",
            )
        if got == expected:
            return 1.0, f"Correct: the answer is {example['answer']}."
        return (
            0.0,
            f"Incorrect: the reply's answer is {got:g}, expected {example['answer']}. {context}",
        )

    return evaluate
