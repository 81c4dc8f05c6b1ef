"""Lines that copy the reflection prompt's own instructions are dropped (scripted LMs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import gepetto
from gepetto import DEFAULT_REFLECTION_TEMPLATE
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.lm.protocol import as_async_lm
from gepetto.proposers import ProposalOutcome, ReflectiveProposer, resolve_templates
from gepetto.proposers.guards import drop_prompt_echoes
from gepetto.testing import ScriptedLM

PARENT = "Classify the customer message: billing, technical, account or shipping."
RECORDS = [
    {
        "Inputs": "Order #30457 never showed up.",
        "Generated Outputs": "account",
        "Feedback": "Incorrect: expected 'shipping'",
    }
]
RULE = "A delivery problem is shipping, even when a refund is asked."


@pytest.mark.parametrize(
    ("line", "echo"),
    [
        # Lines the 1.5B reflection model really wrote into its proposals.
        ("Say exactly what form the answer must take.", True),
        ("1. Say exactly what form the answer must take:", True),
        ("Keep the rules and examples of the current instructions that worked.", True),
        ("Add every rule or fact that the feedback reveals, as short general rules:", True),
        (
            'Add short examples, one per line, each an input and its correct answer: "input" -> x',
            True,
        ),
        ("The assistant followed them on the inputs below.", True),
        # An echoed phrase with the line's own content after it stays.
        ("Say exactly what form the answer must take: technical, account, shipping.", False),
        ("Say exactly what form the answer must take: billing or shipping.", False),
        (RULE, False),
        ("Keep the answers short.", False),  # too short to be judged an echo
    ],
)
def test_a_line_is_dropped_only_when_it_repeats_the_template(line: str, echo: bool) -> None:
    child = f"{PARENT}\n{line}\n{RULE}"
    text, dropped = drop_prompt_echoes(PARENT, child, DEFAULT_REFLECTION_TEMPLATE)
    assert (dropped == [line]) is echo
    assert (line not in text.splitlines()) is echo
    assert RULE in text and PARENT in text


def test_lines_of_the_parent_and_whole_texts_are_left_alone() -> None:
    echo = "Say exactly what form the answer must take."
    parent = f"{PARENT}\n{echo}"  # adopted earlier: the proposer does not rewrite the parent
    assert drop_prompt_echoes(parent, f"{parent}\n{RULE}", DEFAULT_REFLECTION_TEMPLATE)[1] == []
    assert drop_prompt_echoes(PARENT, echo, DEFAULT_REFLECTION_TEMPLATE) == (echo, [])
    # A user's template: its own instructions are what counts, placeholders aside.
    template = "Rewrite <curr_param> so that every customer gets a polite answer. <side_info>"
    line = "Rewrite so that every customer gets a polite answer."
    assert drop_prompt_echoes(PARENT, f"{PARENT}\n{line}", template)[1] == [line]
    assert drop_prompt_echoes(PARENT, f"{PARENT}\n{line}", DEFAULT_REFLECTION_TEMPLATE)[1] == []


def propose(replies: list[str], **options: Any) -> ProposalOutcome:
    proposer = ReflectiveProposer(
        as_async_lm(ScriptedLM(replies)), resolve_templates(None, ["instructions"]), **options
    )
    return asyncio.run(
        proposer.propose({"instructions": PARENT}, {"instructions": RECORDS}, ["instructions"])
    )


def test_the_proposer_drops_echoes_and_says_so() -> None:
    reply = f"```\n{PARENT}\nSay exactly what form the answer must take.\n{RULE}\n```"
    outcome = propose([reply])
    assert outcome.texts == {"instructions": f"{PARENT}\n{RULE}"}
    assert outcome.flags["instructions"] == (
        "dropped 1 line repeating the reflection prompt "
        "('Say exactly what form the answer must take.')"
    )
    # With the guards off, the text is taken as written.
    unguarded = propose([reply], guards="off")
    assert "Say exactly" in unguarded.texts["instructions"] and not unguarded.flags


def test_a_reply_that_only_adds_echoes_is_asked_again() -> None:
    only_echoes = (
        f"```\n{PARENT}\nKeep the rules and examples of the current instructions that worked.\n```"
    )
    outcome = propose([only_echoes, f"```\n{PARENT}\n{RULE}\n```"])
    assert outcome.texts == {"instructions": f"{PARENT}\n{RULE}"}
    assert outcome.lm_calls == 2 and not outcome.flags
    failure = propose([only_echoes, only_echoes])
    assert failure.texts == {}
    assert failure.failures["instructions"].startswith(
        "the reply only adds lines of the reflection prompt's instructions"
    )


def always_account(messages: list[dict[str, str]]) -> str:
    return "account"


def test_an_optimization_evaluates_the_text_without_the_echo() -> None:
    seen: list[Any] = []

    class Recorder:
        def on_reflection_finished(self, event: Any) -> None:
            seen.append(event)

    reply = f"```\n{PARENT}\nSay exactly what form the answer must take.\n{RULE}\n```"
    result = gepetto.optimize(
        {"instructions": PARENT},
        [{"input": "Order #30457 never showed up.", "answer": "shipping"}],
        adapter=DefaultAdapter(always_account, exact_match_evaluator()),
        reflection_lm=ScriptedLM([reply], repeat_last=True),
        max_metric_calls=4,
        display_progress_bar=False,
        callbacks=[Recorder()],
    )
    assert result.total_metric_calls <= 4
    assert seen[0].proposed["instructions"] == f"{PARENT}\n{RULE}"
    assert "repeating the reflection prompt" in seen[0].flags["instructions"]
