"""The built-in task generators: deterministic, balanced, and teaching their rules."""

from __future__ import annotations

import datetime
import re
from collections import Counter

import pytest

from gepetto.adapters import exact_match_evaluator
from gepetto.datasets import (
    DATES_FORMAT_PROMPT,
    DATES_HANDWRITTEN_PROMPT,
    DATES_SEED_PROMPT,
    date_normalization,
    ticket_routing,
    ticket_routing_splits,
)
from gepetto.datasets import dates as dates_module

SLASH = re.compile(r"\b(\d{2})/(\d{2})/(\d{4})\b")


def rule_of(example: dict[str, object]) -> str | None:
    context = example["additional_context"]
    assert isinstance(context, dict)
    text = context.get("rule")
    return next((name for name, rule in dates_module.RULES.items() if rule == text), None)


@pytest.mark.parametrize("generator", [date_normalization, ticket_routing])
def test_generators_are_deterministic_in_their_seed(generator) -> None:  # type: ignore[no-untyped-def]
    assert generator(30, seed=1) == generator(30, seed=1)
    assert generator(30, seed=1) != generator(30, seed=2)
    assert generator(0, seed=1) == []


def test_dates_answers_are_iso_dates() -> None:
    for seed in range(5):
        for example in date_normalization(40, seed=seed):
            answer = example["answer"]
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer)
            datetime.date.fromisoformat(answer)  # a real calendar date
            assert set(example) == {"input", "answer", "additional_context"}


@pytest.mark.parametrize("n", [10, 30, 31])
def test_dates_tricky_fraction_is_spread_over_the_rules(n: int) -> None:
    examples = date_normalization(n, seed=3)
    rules = Counter(rule_of(e) for e in examples)
    tricky = n - rules[None]
    assert tricky == round(n * 0.4)
    counts = [rules[name] for name in dates_module.RULES]
    assert max(counts) - min(counts) <= 1
    assert sum(1 for e in date_normalization(n, seed=3, tricky_fraction=0.0) if rule_of(e)) == 0


def test_dates_plain_answers_span_several_years_and_months() -> None:
    plain = [e["answer"] for e in date_normalization(60, seed=1) if rule_of(e) is None]
    assert len({answer[:4] for answer in plain}) == 3  # so "no year = 2025" is a real rule
    assert len({answer[5:7] for answer in plain}) >= 8


def test_dates_tricky_examples_follow_their_convention() -> None:
    examples = [e for seed in range(5) for e in date_normalization(30, seed=seed)]
    for example in examples:
        rule, text, answer = rule_of(example), example["input"], example["answer"]
        if rule == "slash-day-first":
            day, month, year = SLASH.search(text).groups()  # type: ignore[union-attr]
            assert answer == f"{year}-{month}-{day}"
            assert day != month and int(day) <= 12  # the month-first reading is wrong
        elif rule == "missing-year":
            assert answer.startswith("2025-")
            assert not re.search(r"\b20\d{2}\b", text)
        elif rule == "mid-month":
            assert "mid" in text
            assert answer.endswith("-15")


def test_dates_feedback_teaches_the_rule_of_a_tricky_example() -> None:
    evaluate = exact_match_evaluator()
    examples = date_normalization(30, seed=2)
    for example in examples:
        rule = rule_of(example)
        right = evaluate(example, f"{example['answer']}\n")
        assert right[0] == 1.0
        score, feedback = evaluate(example, "March 5th")[:2]
        assert score == 0.0
        assert example["answer"] in feedback
        if rule is not None:
            assert dates_module.RULES[rule] in feedback
        else:
            assert "YYYY-MM-DD" in feedback


def test_dates_prompts_go_from_vague_to_the_rules() -> None:
    assert "YYYY-MM-DD" not in DATES_SEED_PROMPT
    assert "YYYY-MM-DD" in DATES_FORMAT_PROMPT
    for word in ("DD/MM/YYYY", "2025", "15"):
        assert word in DATES_HANDWRITTEN_PROMPT
        assert word not in DATES_FORMAT_PROMPT


def test_ticket_splits_share_no_input() -> None:
    splits = ticket_routing_splits(30, seeds=(1, 2, 3))
    inputs = [{e["input"] for e in split} for split in splits]
    assert [len(s) for s in inputs] == [30, 30, 30]
    assert not (inputs[0] & inputs[1] or inputs[0] & inputs[2] or inputs[1] & inputs[2])
    # Without exclusion, two seeds do draw some of the same messages: exclusion is needed.
    assert {e["input"] for e in ticket_routing(30, seed=1)} & {
        e["input"] for e in ticket_routing(30, seed=3)
    }
    assert splits[0] == ticket_routing(30, seed=1)  # the first split is the plain generator's
    excluded = ticket_routing(30, seed=3, exclude=inputs[0])
    assert not {e["input"] for e in excluded} & inputs[0]


def test_ticket_generator_says_when_it_runs_out_of_messages() -> None:
    with pytest.raises(ValueError, match="fewer examples"):
        ticket_routing(5000, seed=0)
    with pytest.raises(ValueError, match="tricky_fraction"):
        ticket_routing(10, tricky_fraction=1.5)
