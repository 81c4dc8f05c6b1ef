"""``reflection_edit="append"``: the reflection reply is added to the current text."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.lm.protocol import as_async_lm
from gepetto.proposers import (
    APPEND_REFLECTION_TEMPLATE,
    DEFAULT_REFLECTION_TEMPLATE,
    ProposalOutcome,
    ReflectiveProposer,
    apply_edit,
    resolve_templates,
)
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset

PARENT = "Classify the customer message.\nAnswer with one word."
RECORDS = [{"Inputs": "Order late, refund me", "Feedback": "expected 'shipping'"}]


def propose(lm: ScriptedLM, **options: Any) -> ProposalOutcome:
    edit = options.get("edit", "rewrite")
    proposer = ReflectiveProposer(
        as_async_lm(lm), resolve_templates(None, ["instructions"], edit), **options
    )
    return asyncio.run(
        proposer.propose({"instructions": PARENT}, {"instructions": RECORDS}, ["instructions"])
    )


def test_an_addition_is_appended_to_the_current_text() -> None:
    lm = ScriptedLM(["Here you go:\n```\nLate parcels are shipping.\n```"])
    outcome = propose(lm, edit="append")
    assert outcome.texts == {"instructions": PARENT + "\n\nLate parcels are shipping."}
    assert lm.prompts[0].startswith("Improve the instructions of an AI assistant by adding")
    assert PARENT in lm.prompts[0] and "expected 'shipping'" in lm.prompts[0]


def test_lines_already_in_the_text_are_not_repeated() -> None:
    reply = "```\nanswer with ONE word.\nLate parcels are shipping.\n```"
    outcome = propose(ScriptedLM([reply]), edit="append")
    assert outcome.texts == {"instructions": PARENT + "\n\nLate parcels are shipping."}


def test_a_reply_that_repeats_the_whole_text_is_the_complete_new_text() -> None:
    rewritten = PARENT.replace("\n", "\n\n") + "\nLate parcels are shipping."
    outcome = propose(ScriptedLM([f"```\n{rewritten}\n```"]), edit="append")
    assert outcome.texts == {"instructions": rewritten}


def test_an_addition_with_nothing_new_is_asked_for_again() -> None:
    lm = ScriptedLM(["```\nAnswer with one word.\n```", "```\nRefunds for parcels: shipping.\n```"])
    outcome = propose(lm, edit="append")
    assert outcome.texts == {"instructions": PARENT + "\n\nRefunds for parcels: shipping."}
    assert outcome.lm_calls == 2
    assert "only repeated lines the instructions already have" in lm.prompts[1]
    assert "only the new lines to add" in lm.prompts[1]


def test_an_addition_with_nothing_new_after_the_retries_is_a_failure() -> None:
    lm = ScriptedLM(["```\nAnswer with one word.\n```"], repeat_last=True)
    outcome = propose(lm, edit="append", retries=1)
    assert outcome.texts == {}
    assert outcome.failures["instructions"].startswith("the addition only repeats")
    assert outcome.lm_calls == 2


def test_rewrite_is_the_default_and_unchanged() -> None:
    lm = ScriptedLM(["```\nLate parcels are shipping.\n```"])
    assert propose(lm).texts == {"instructions": "Late parcels are shipping."}
    assert apply_edit(PARENT, "X", "rewrite") == "X"
    assert resolve_templates(None, ["a"]) == {"a": DEFAULT_REFLECTION_TEMPLATE}
    assert resolve_templates(None, ["a"], "append") == {"a": APPEND_REFLECTION_TEMPLATE}
    # A user's template is used as given in either mode.
    mine = "Fix <curr_param> using <side_info>."
    assert resolve_templates(mine, ["a"], "append") == {"a": mine}


def test_a_bad_edit_mode_is_refused_before_any_call() -> None:
    lm = ScriptedLM(["```\nnever asked\n```"])
    with pytest.raises(ConfigError, match=r"reflection_edit must be 'rewrite'.*or 'append'"):
        gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(["a", "b"]),
            adapter=KeywordAdapter(),
            reflection_lm=lm,
            reflection_edit="replace",
            max_metric_calls=10,
            display_progress_bar=False,
        )
    assert lm.prompts == []


def test_an_append_run_keeps_what_its_ancestors_learned() -> None:
    words = [f"w{i}" for i in range(6)]

    class AddOnlyTheMissing:
        """Replies with only the words the feedback asks for (an addition)."""

        def __init__(self) -> None:
            self.inner = FeedbackFollowingLM()

        def __call__(self, prompt: str) -> str:
            full = self.inner(prompt)  # "Here is ...:\n```\n<current text> w1\n```"
            current = prompt.split("```\n", 1)[1].split("\n```", 1)[0]
            proposed = full.split("```\n", 1)[1].split("\n```", 1)[0]
            added = [word for word in proposed.split() if word not in current.split()]
            return "```\n" + " ".join(added) + "\n```"

    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(words, copies=2),
        keyword_dataset(words),
        adapter=KeywordAdapter(),
        reflection_lm=AddOnlyTheMissing(),
        reflection_edit="append",
        max_metric_calls=200,
        display_progress_bar=False,
    )
    best = result.best_candidate["instructions"]
    assert best.startswith("Answer.\n\n")
    assert result.best_score > result.seed_score
    for candidate in result.candidates[1:]:  # every child keeps the seed's text
        assert candidate["instructions"].startswith("Answer.")
