"""Example lines that teach an answer marked wrong are dropped (scripted LMs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import gepetto
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.errors import ConfigError
from gepetto.lm.protocol import as_async_lm
from gepetto.proposers import ProposalOutcome, ReflectiveProposer, resolve_templates
from gepetto.proposers.guards import drop_wrong_examples
from gepetto.testing import ScriptedLM

LOST = "Order #30457 never showed up. Give me my money back!"
CRASH = "The app crashes every time I open the search screen."
RECORDS = [
    {"Inputs": LOST, "Generated Outputs": "account", "Feedback": "Incorrect: expected 'shipping'"},
    {"Inputs": CRASH, "Generated Outputs": "technical", "Feedback": "Correct."},
]
FAILED = [True, False]
PARENT = "Classify the customer message: billing, technical, account or shipping."


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        (f'"{LOST}" -> account', True),
        ('"Order #30457 never showed up..." -> account', True),  # a truncated quote
        (f"- Input: {LOST} => Account.", True),  # bullet, prefix, other arrow, case
        (f"1. {LOST} → account", True),
        (f'"{LOST}" -> shipping', False),  # the expected answer: kept
        (f'"{CRASH}" -> technical', False),  # the assistant's answer, but it was right
        ('"never showed" -> account', False),  # too short to match a shown input
        ('"My order never showed up at all" -> account', False),  # not a shown input
        ("Delivery problems -> shipping", False),
    ],
)
def test_a_line_is_dropped_only_when_it_teaches_a_wrong_answer(line: str, dropped: bool) -> None:
    child = f"{PARENT}\n{line}\nAnswer with the label only."
    text, lines = drop_wrong_examples(PARENT, child, RECORDS, FAILED)
    assert (lines == [line]) is dropped
    assert (line not in text) is dropped
    assert "Answer with the label only." in text


def test_lines_already_in_the_parent_and_whole_drops_are_left_alone() -> None:
    wrong = f'"{LOST}" -> account'
    parent = f"{PARENT}\n{wrong}"
    assert drop_wrong_examples(parent, parent + "\nBe brief.", RECORDS, FAILED)[1] == []
    assert drop_wrong_examples(PARENT, wrong, RECORDS, FAILED) == (wrong, [])
    odd = [{"input": LOST, "output": "account"}]  # not the Inputs / Generated Outputs fields
    assert drop_wrong_examples(PARENT, f"{PARENT}\n{wrong}", odd, [True])[1] == []


def propose(replies: list[str], failed: list[bool] | None, **options: Any) -> ProposalOutcome:
    proposer = ReflectiveProposer(
        as_async_lm(ScriptedLM(replies)),
        resolve_templates(None, ["instructions"]),
        drop_wrong_examples=True,
        **options,
    )
    return asyncio.run(
        proposer.propose(
            {"instructions": PARENT},
            {"instructions": RECORDS},
            ["instructions"],
            failed=failed,
        )
    )


def test_the_proposer_repairs_and_says_so() -> None:
    reply = f'```\n{PARENT}\n"{LOST}" -> account\n"{CRASH}" -> technical\n```'
    outcome = propose([reply], FAILED)
    assert outcome.texts == {"instructions": f'{PARENT}\n"{CRASH}" -> technical'}
    assert "dropped 1 example line with an answer marked wrong" in outcome.flags["instructions"]
    assert "copies example text" in outcome.flags["instructions"]  # the guards' flag as well
    unguarded = propose([reply], FAILED, guards="off")  # the repair is not a guard
    assert unguarded.flags["instructions"].startswith("dropped 1 example line")
    # With scores that do not line up with the records, nothing is dropped.
    assert LOST in propose([reply], [True]).texts["instructions"]


def test_a_reply_that_only_adds_wrong_examples_is_asked_again() -> None:
    only_wrong = f'```\n{PARENT}\n"{LOST}" -> account\n```'
    fixed = f'```\n{PARENT}\n"{LOST}" -> shipping\n```'
    outcome = propose([only_wrong, fixed], FAILED)
    assert outcome.texts == {"instructions": f'{PARENT}\n"{LOST}" -> shipping'}
    assert outcome.lm_calls == 2 and "dropped" not in outcome.flags["instructions"]
    failure = propose([only_wrong, only_wrong], FAILED)
    assert failure.texts == {}
    assert failure.failures["instructions"].startswith("the reply only adds examples")


def always_account(messages: list[dict[str, str]]) -> str:
    return "account"


def test_an_optimization_goes_on_with_the_repaired_text() -> None:
    train = [
        {"input": LOST, "answer": "shipping", "additional_context": {}},
        {"input": "How can I change my username?", "answer": "account", "additional_context": {}},
    ]
    seen: list[Any] = []

    class Recorder:
        def on_reflection_finished(self, event: Any) -> None:
            seen.append(event)

    reply = f'```\n{PARENT}\n"{LOST}" -> account\n```\nDone.'
    options: dict[str, Any] = {
        "adapter": DefaultAdapter(always_account, exact_match_evaluator()),
        "max_metric_calls": 8,
        "reflection_minibatch_size": 2,
        "display_progress_bar": False,
        "callbacks": [Recorder()],
    }
    repaired = gepetto.optimize(
        {"instructions": PARENT},
        train,
        reflection_lm=ScriptedLM([reply.replace(PARENT, PARENT + " Be brief.")], repeat_last=True),
        drop_wrong_examples=True,
        **options,
    )
    assert repaired.total_metric_calls <= 8
    assert seen[0].proposed["instructions"] == PARENT + " Be brief."  # what was then evaluated
    assert "dropped 1 example line" in seen[0].flags["instructions"]
    seen.clear()
    plain = gepetto.optimize(
        {"instructions": PARENT},
        train,
        reflection_lm=ScriptedLM([reply.replace(PARENT, PARENT + " Be brief.")], repeat_last=True),
        **options,
    )
    assert plain.total_metric_calls <= 8
    assert LOST in seen[0].proposed["instructions"]  # off by default
    assert "dropped" not in seen[0].flags.get("instructions", "")


def test_a_bad_value_is_refused_before_any_call() -> None:
    lm = ScriptedLM(["```\nx\n```"], repeat_last=True)
    with pytest.raises(ConfigError, match="drop_wrong_examples"):
        gepetto.optimize(
            {"instructions": PARENT},
            [{"input": LOST, "answer": "shipping"}],
            adapter=DefaultAdapter(always_account, exact_match_evaluator()),
            reflection_lm=lm,
            max_metric_calls=4,
            drop_wrong_examples="yes",
        )
    assert lm.calls == 0
